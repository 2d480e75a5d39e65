# The TRX recipe (Perrett et al., CVPR 2021; tobyperrett/trx run.py): end-to-end fine-tuning of
# an ImageNet ResNet-50, SGD lr 1e-3 without momentum, 16 tasks per batch, about 100k training
# iterations, 5 training queries per class. Validation every 5,000 tasks on 1,000 val episodes.
schedule = dict(
    name="trx-sgd",
    mode="finetune",
    pretrain=dict(enabled=False),
    meta=dict(
        iters=100_000,
        tasks_per_batch=16,
        val_interval=4_992,  # a multiple of tasks_per_batch: checkpoints fall on optimizer steps
        val_episodes=1_000,
        log_interval=160,
        optimizer=dict(type="SGD", lr=1e-3),
        param_scheduler=[],
    ),
)
