# The A²M²-Net recipe for SSv2-Full, RECONSTRUCTED: as a2m2_sgd (see its
# comments and tags) with a longer stage 2, 50k episodes [I], for the larger, motion-heavy
# dataset, and a pretraining stage sized to its 77,500 training videos [I].
schedule = dict(
    name="a2m2-sgd-ssv2-full",
    mode="finetune",
    pretrain=dict(
        enabled=True,
        seed=0,
        iters=20_000,  # [I] 320k clips of 16: ~4 epochs of the 77,500-video train split
        batch_videos=16,
        checkpoint_interval=2_000,
        log_interval=100,
        optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=5e-4),  # [I]
        param_scheduler=[dict(type="CosineAnnealingLR", T_max=20_000, by_epoch=False)],  # [I]
    ),
    meta=dict(
        iters=50_000,  # [I] 50k episodes on SSv2-Full
        tasks_per_batch=1,  # [I]
        val_interval=2_500,  # a multiple of tasks_per_batch
        val_episodes=1_000,
        log_interval=100,
        optimizer=dict(type="SGD", lr=1e-3, momentum=0.9, weight_decay=5e-4),  # [I]
        paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}),  # [I] backbone 1e-4
        param_scheduler=[dict(type="CosineAnnealingLR", T_max=50_000, by_epoch=False)],  # [I]
    ),
)
