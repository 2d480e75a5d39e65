# The small backbone for synth on two CPU cores: MMAction2's ResNet-18, first three stages
# (256 channels, stride 16: 4x4 maps from a 56-pixel crop), applied to each frame.
backbone = dict(
    type="FrameResNet",
    depth=18,
    num_stages=3,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
)
