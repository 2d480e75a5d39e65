# The TRX episode protocol at synth's size: 64-pixel videos, short side kept, a 56 crop.
# Frames are small because the built-in benchmark must run on two CPU cores.
protocol = dict(
    name="synth-5way",
    version=1,
    n_way=5,
    k_shots=(1, 5),
    queries_per_class_train=5,
    queries_per_class_test=1,
    test_episodes=10_000,
    num_frames=8,
    resize_short=64,
    crop=56,
    hflip=False,  # left and right are distinct primitives in synth: a flip would swap classes
)
