# The small backbone for synth on two CPU cores: MMAction2's ResNet-18, first three stages
# (256 channels, stride 16: 4x4 maps from a 56-pixel crop), applied to each frame.
name = "resnet18_synth"
about = dict(
    summary="MMAction2 ResNet-18, 3 stages, per frame (256-d, 4x4 maps at 56 px)",
    weights="none needed: synth pretrains it (the synth-quick schedule)",
    weights_pretrained_on=[],  # what weights for it are taken to have seen, unless declared
    must_declare_pretraining=False,
)
backbone = dict(
    type="FrameResNet",
    depth=18,
    num_stages=3,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
)
