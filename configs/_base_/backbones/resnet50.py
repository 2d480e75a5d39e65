# The standard FSAR backbone: MMAction2's ResNet-50 per frame (2048 channels, 7x7 maps at 224),
# ImageNet normalisation. ImageNet weights come from a file the user names (--weights).
backbone = dict(
    type="FrameResNet",
    depth=50,
    num_stages=4,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
)
