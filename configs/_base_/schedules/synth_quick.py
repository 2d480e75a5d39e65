# The quick CPU recipe for synth: pretrain the small backbone by classification over the 64
# train classes, then train each head on frozen features. Pretraining has its own fixed seed,
# so one stage serves every method, shot and run seed, the way ImageNet weights do on the real
# benchmarks; run seeds vary the head's initialisation, the training and the test episodes.
schedule = dict(
    name="synth-quick",
    mode="frozen",
    pretrain=dict(
        enabled=True,
        seed=0,
        iters=300,
        batch_videos=16,
        checkpoint_interval=100,
        log_interval=50,
        optimizer=dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=1e-4),
        param_scheduler=[dict(type="CosineAnnealingLR", T_max=300, by_epoch=False)],
    ),
    meta=dict(
        iters=300,
        tasks_per_batch=1,
        val_interval=100,
        val_episodes=500,
        log_interval=50,
        optimizer=dict(type="Adam", lr=1e-3),
        param_scheduler=[],
    ),
)
