# The TA²N recipe for SSv2 (Li et al., AAAI 2022, implementation details [P]): end-to-end
# fine-tuning, SGD lr 1e-3 momentum 0.9, lr x 0.8 every 30 epochs, 600 epochs of 200 episodes.
# One episode is one task (one fsarbench iteration), as in the released code: 600 epochs =
# 120,000 tasks = 7,500 optimizer steps of 16 tasks (the code's tasks_per_batch).
schedule = dict(
    name="ta2n-sgd-ssv2",
    mode="finetune",
    pretrain=dict(enabled=False),
    meta=dict(
        iters=120_000,
        tasks_per_batch=16,
        val_interval=4_000,  # 20 epochs; a multiple of tasks_per_batch
        val_episodes=1_000,
        log_interval=200,
        optimizer=dict(type="SGD", lr=1e-3, momentum=0.9),
        param_scheduler=[dict(type="StepLR", step_size=6_000, gamma=0.8, by_epoch=False)],
    ),
)
