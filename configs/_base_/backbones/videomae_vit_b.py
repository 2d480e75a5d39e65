# VideoMAE ViT-B/16 on whole clips (transformers VideoMAEModel): tubelets of 2 frames, so T
# frames give T/2 steps; 768-d tokens, 14x14 per step at 224 px; position table interpolated
# for 8-frame clips. Weights: a folder in the Hugging Face format
# (--weights DIR), e.g. MCG-NJU/videomae-base; its config.json sets the architecture.
name = "videomae-vit-b"
about = dict(
    summary="VideoMAE ViT-B/16, tubelet 2 (T frames -> T/2 steps; 768-d, 14x14 maps)",
    weights="a Hugging Face folder, e.g. MCG-NJU/videomae-base (--weights DIR)",
    weights_pretrained_on=[],
    # VideoMAE checkpoints are pretrained on Kinetics-400 or SSv2, which hold k100's and the
    # SSv2 splits' test classes: weights must say which (--pretrained-on)
    must_declare_pretraining=True,
)
backbone = dict(
    type="VideoMAEBackbone",
    pretrained=None,
    arch=dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=16,
        num_frames=16,
        tubelet_size=2,
    ),
)
