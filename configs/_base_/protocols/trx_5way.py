# The TRX protocol most FSAR papers follow (Perrett et al., CVPR 2021): 5-way, 1 and 5 shot,
# 5 queries per class in training episodes and 1 at test, 10,000 test episodes, 8 frames by TSN
# segments, short side 256 then a 224 crop. Any departure is a new, named protocol.
protocol = dict(
    name="trx-5way",
    version=1,
    n_way=5,
    k_shots=(1, 5),
    queries_per_class_train=5,
    queries_per_class_test=1,
    test_episodes=10_000,
    num_frames=8,
    resize_short=256,
    crop=224,
    hflip=True,
)
