# The OTAM recipe of Perrett's few-shot-action-recognition library (its OTAM reimplementation;
# issues #2 and #3): end-to-end fine-tuning of an ImageNet ResNet-50, SGD lr 1e-3 without
# momentum or weight decay, ONE task per optimizer step (issue #3: OTAM trains best that way),
# about 100k training tasks, 5 training queries per class. The paper's own optimiser and
# iteration count are not verified. The otam-reimpl's alternative
# (momentum 0.9, weight decay 5e-4) is not used. Validation every 5,000 tasks on 1,000 val
# episodes.
schedule = dict(
    name="otam-sgd",
    mode="finetune",
    pretrain=dict(enabled=False),
    meta=dict(
        iters=100_000,
        tasks_per_batch=1,
        val_interval=5_000,  # a multiple of tasks_per_batch
        val_episodes=1_000,
        log_interval=100,
        optimizer=dict(type="SGD", lr=1e-3),
        param_scheduler=[],
    ),
)
