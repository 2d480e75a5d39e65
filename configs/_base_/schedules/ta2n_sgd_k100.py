# The TA²N recipe for Kinetics-100 (Li et al., AAAI 2022, implementation details [P]):
# end-to-end fine-tuning, SGD lr 1e-3 without momentum, lr x 0.9 every 20 epochs, 200 epochs of
# 200 episodes. One episode is one task (one fsarbench iteration), as in the released code:
# 200 epochs = 40,000 tasks = 2,500 optimizer steps of 16 tasks (the code's tasks_per_batch).
schedule = dict(
    name="ta2n-sgd-k100",
    mode="finetune",
    pretrain=dict(enabled=False),
    meta=dict(
        iters=40_000,
        tasks_per_batch=16,
        val_interval=2_000,  # 10 epochs; a multiple of tasks_per_batch
        val_episodes=1_000,
        log_interval=200,
        optimizer=dict(type="SGD", lr=1e-3, momentum=0.0),
        param_scheduler=[dict(type="StepLR", step_size=4_000, gamma=0.9, by_epoch=False)],
    ),
)
