# The CLIP-FSAR recipe for SSv2-Full (released config): Adam lr 5e-5,
# weight decay 5e-5, 4 tasks per batch, one warm-up epoch, lr x0.1 at epoch 4 and x0.01 at
# epoch 6, 10 epochs of 4,000 iterations. One iteration is taken to be one task (as for every
# fsarbench recipe): 40,000 tasks; the config's NUM_TRAIN_TASKS says 30,000 (README).
# The CLIP encoder is trained at this low lr (the head code shows no freezing; unconfirmed).
schedule = dict(
    name="clip-fsar-adam-ssv2",
    mode="finetune",
    pretrain=dict(enabled=False),
    meta=dict(
        iters=40_000,
        tasks_per_batch=4,
        val_interval=4_000,  # one epoch; a multiple of tasks_per_batch
        val_episodes=1_000,
        log_interval=200,
        optimizer=dict(type="Adam", lr=5e-5, weight_decay=5e-5),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.01, end=4_000, by_epoch=False),
            dict(type="MultiStepLR", milestones=[16_000, 24_000], gamma=0.1, by_epoch=False),
        ],
    ),
)
