# Meta-test settings shared by every run. Test features are stored as float16 (half the disk
# and memory); heads compute in float32.
evaluation = dict(
    feature_dtype="float16",
    embed_batch_videos=16,
    episodes_per_batch=500,
    num_workers=2,
)
