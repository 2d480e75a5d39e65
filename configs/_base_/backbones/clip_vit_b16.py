# CLIP ViT-B/16's image encoder per frame (transformers CLIPVisionModelWithProjection):
# pooled = the 512-d projected class token, maps = 768-d patch tokens (14x14 at 224 px), CLIP
# normalisation. Weights: a folder in the Hugging Face format (--weights DIR) such as
# openai/clip-vit-base-patch16; its config.json sets the architecture. Without weights: random
# init at the architecture below.
name = "clip-vit-b16"
about = dict(
    summary="CLIP ViT-B/16 image encoder per frame (512-d projected, 768-d 14x14 patch maps)",
    weights="a Hugging Face folder, e.g. openai/clip-vit-base-patch16 (--weights DIR)",
    weights_pretrained_on=["wit-400m"],  # OpenAI's CLIP weights
    must_declare_pretraining=False,
)
backbone = dict(
    type="CLIPFrameBackbone",
    pretrained=None,
    arch=dict(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=16,
        projection_dim=512,
    ),
)
