# The standard FSAR backbone: MMAction2's ResNet-50 per frame (2048 channels, 7x7 maps at 224),
# ImageNet normalisation. ImageNet weights come from a file the user names (--weights).
name = "resnet50"
about = dict(
    summary="MMAction2 ResNet-50 per frame (2048-d, 7x7 maps at 224 px)",
    weights="a state-dict file (--weights FILE): torchvision, MMPretrain or MMAction2 TSN layout",
    weights_pretrained_on=[],  # ImageNet is usual but not assumed: --pretrained-on says it
    must_declare_pretraining=False,
)
backbone = dict(
    type="FrameResNet",
    depth=50,
    num_stages=4,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
)
