# The CLIP-FSAR recipe for Kinetics-100 (released config): Adam lr 1e-5,
# weight decay 5e-4, 4 tasks per batch, one warm-up epoch, lr x0.1 at epoch 6 and x0.01 at
# epoch 9, 10 epochs of 250 iterations (one iteration taken as one task: 2,500 tasks; the
# config's NUM_TRAIN_TASKS says 5,000, README). Also used for UCF-101 and HMDB-51, whose
# configs were not inspected.
schedule = dict(
    name="clip-fsar-adam-k100",
    mode="finetune",
    pretrain=dict(enabled=False),
    meta=dict(
        iters=2_500,
        tasks_per_batch=4,
        val_interval=248,  # about one epoch; a multiple of tasks_per_batch
        val_episodes=1_000,
        log_interval=50,
        optimizer=dict(type="Adam", lr=1e-5, weight_decay=5e-4),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.01, end=250, by_epoch=False),
            dict(type="MultiStepLR", milestones=[1_500, 2_250], gamma=0.1, by_epoch=False),
        ],
    ),
)
