# The quick CPU recipe for synth on a pretrained backbone that must stay as it is (CLIP-FSAR on
# CLIP): no classification pretraining on synth (its SGD at lr 0.05 would overwrite CLIP's
# weights), then the head trains on stored features, as in synth-quick.
schedule = dict(
    name="synth-frozen",
    mode="frozen",
    pretrain=dict(enabled=False),
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
