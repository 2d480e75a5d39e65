# The TA²N recipe for UCF-101 and HMDB-51 (Li et al., AAAI 2022, implementation details [P]):
# end-to-end fine-tuning, SGD lr 1e-3 momentum 0.9, lr x 0.5 every 5 epochs, 200 epochs of 200
# episodes. One episode is one task (one fsarbench iteration), as in the released code, whose
# iteration count, StepLR steps and validation interval (200 in its UCF script) are in tasks:
# 200 epochs = 40,000 tasks = 2,500 optimizer steps of 16 tasks (the code's tasks_per_batch).
schedule = dict(
    name="ta2n-sgd-ucf-hmdb",
    mode="finetune",
    pretrain=dict(enabled=False),
    meta=dict(
        iters=40_000,
        tasks_per_batch=16,
        val_interval=800,  # 4 epochs; a multiple of tasks_per_batch
        val_episodes=1_000,
        log_interval=200,
        optimizer=dict(type="SGD", lr=1e-3, momentum=0.9),
        param_scheduler=[dict(type="StepLR", step_size=1_000, gamma=0.5, by_epoch=False)],
    ),
)
