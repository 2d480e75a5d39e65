"""The backbone registry and contract: every backbone's outputs, CLIP and VideoMAE loaded from
random-init stand-ins saved in the Hugging Face format, VM-1, and every method on every tiny
backbone through `fsarbench run` on a synth episode set."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY_SYNTH
from fsarbench.backbones import all_backbones, backbone_info
from fsarbench.cli import main
from fsarbench.errors import FsarbenchError
from fsarbench.methods.hf_backbones import CLIPFrameBackbone, VideoMAEBackbone, clip_text_tower
from fsarbench.names import resolve_benchmarks
from fsarbench.registry import MODELS
from fsarbench.results import load_record
from fsarbench.runs import SuiteOptions, run_suite


def tiny_backbones(standin_weights) -> dict[str, dict]:
    return {
        "resnet": dict(type="FrameResNet", depth=18, num_stages=1),
        "clip": dict(type="CLIPFrameBackbone", pretrained=str(standin_weights["clip"])),
        "videomae": dict(type="VideoMAEBackbone", pretrained=str(standin_weights["videomae"])),
    }


@pytest.mark.parametrize("kind", ["resnet", "clip", "videomae"])
def test_every_backbone_keeps_the_output_contract(kind, standin_weights):
    backbone = MODELS.build(tiny_backbones(standin_weights)[kind])
    pixels = torch.randn(2, 8, 3, 56, 56)  # [B, T, 3, H, W]
    steps = backbone.time_steps(8)
    assert steps == (4 if kind == "videomae" else 8)
    pooled, maps = backbone(pixels, "pooled"), backbone(pixels, "maps")
    assert pooled.shape == (2, steps, backbone.channels("pooled"))
    assert maps.shape[:3] == (2, steps, backbone.channels("maps")) and maps.dim() == 5
    assert torch.isfinite(pooled).all() and torch.isfinite(maps).all()


@pytest.mark.parametrize("kind", ["resnet", "clip", "videomae"])
def test_pooled_from_maps_is_bit_for_bit_the_pooled_forward(kind, standin_weights):
    # the feature store writes a pooled store from a maps pass with pool_maps: it must be
    # the same bits as a pooled pass, or None where pooled is not a function of the maps
    backbone = MODELS.build(tiny_backbones(standin_weights)[kind]).eval()
    pixels = torch.randn(2, 8, 3, 56, 56)  # [B, T, 3, H, W]
    with torch.inference_mode():
        from_maps = backbone.pool_maps(backbone(pixels, "maps"))
        pooled = backbone(pixels, "pooled")
    if kind == "resnet":
        assert torch.equal(from_maps, pooled)
    else:  # CLIP pools by its projected class token; VideoMAE's is left to its own pass
        assert from_maps is None


def test_clip_pooled_is_the_projection_and_maps_are_the_normalised_patch_tokens(
    standin_weights,
):
    backbone = CLIPFrameBackbone(pretrained=str(standin_weights["clip"])).eval()
    frames = torch.randn(1, 1, 3, 56, 56)
    from transformers import CLIPModel

    reference = CLIPModel.from_pretrained(str(standin_weights["clip"])).eval()
    with torch.no_grad():
        expected = reference.get_image_features(pixel_values=frames[0])
        if not torch.is_tensor(expected):  # transformers 5 returns an output object
            expected = expected.pooler_output
        pooled = backbone(frames, "pooled")[0]
        maps = backbone(frames, "maps")
    assert torch.allclose(pooled, expected, atol=1e-5)
    assert backbone.channels("pooled") == 16 and backbone.channels("maps") == 32
    assert maps.shape == (1, 1, 32, 7, 7)  # 56 px / patch 8


def test_clip_text_features_are_the_folders_text_tower_projections(standin_weights):
    backbone = CLIPFrameBackbone(pretrained=str(standin_weights["clip"]))
    prompts = ["a photo of grow, then shrink", "a photo of rotate ccw"]
    text = backbone.encode_text(prompts)
    tokenizer, text_model = clip_text_tower(standin_weights["clip"])
    with torch.no_grad():
        expected = text_model(**tokenizer(prompts, padding=True, return_tensors="pt")).text_embeds
    assert text.shape == (2, 16) and torch.allclose(text, expected)  # as given: not normalised
    assert not torch.allclose(text[0], text[1])
    assert not any(name.startswith("text") for name in backbone.state_dict())
    with pytest.raises(FsarbenchError, match="no text tower"):
        CLIPFrameBackbone(
            arch=dict(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
                image_size=56,
                patch_size=8,
                projection_dim=16,
            )
        ).encode_text(["x"])


def test_vm1_token_bookkeeping():
    """Known-answer test VM-1: 16 frames give 8 x 196 tokens; 8 frames, with the position table
    interpolated in time, give 4 x 196."""
    arch = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=224,
        patch_size=16,
        num_frames=16,
    )
    backbone = VideoMAEBackbone(arch=arch).eval()
    with torch.no_grad():
        assert backbone.tokens(torch.randn(1, 16, 3, 224, 224)).shape == (1, 8, 14, 14, 32)
        assert backbone.tokens(torch.randn(1, 8, 3, 224, 224)).shape == (1, 4, 14, 14, 32)
    native = backbone.videomae.embeddings.position_embeddings.reshape(8, 196, 32)
    assert backbone.position_table((8, 14, 14)) is backbone.videomae.embeddings.position_embeddings
    halved = backbone.position_table((4, 14, 14)).reshape(4, 196, 32)
    # align_corners: the first and last steps are the native first and last
    assert torch.allclose(halved[0], native[0], atol=1e-6)
    assert torch.allclose(halved[-1], native[-1], atol=1e-6)
    with pytest.raises(ValueError, match="tubelets of 2"):
        backbone.tokens(torch.randn(1, 7, 3, 224, 224))


def test_videomae_fc_norm_comes_from_a_fine_tuned_checkpoint(standin_weights):
    plain = VideoMAEBackbone(pretrained=str(standin_weights["videomae"]))
    tuned = VideoMAEBackbone(pretrained=str(standin_weights["videomae-finetuned"]))
    assert plain.fc_norm is None and tuned.fc_norm is not None
    from transformers import VideoMAEForVideoClassification

    reference = VideoMAEForVideoClassification.from_pretrained(
        str(standin_weights["videomae-finetuned"])
    )
    assert torch.equal(tuned.fc_norm.weight, reference.fc_norm.weight)
    # the encoder weights are the checkpoint's, not a fresh initialisation
    key = "encoder.layer.0.attention.attention.query.weight"
    assert torch.equal(tuned.videomae.state_dict()[key], reference.videomae.state_dict()[key])


def test_registry_lists_each_backbone_with_its_declared_pretraining():
    backbones = all_backbones()
    assert {"resnet18_synth", "resnet50", "clip-vit-b16", "videomae-vit-b"} <= set(backbones)
    assert backbones["clip-vit-b16"].weights_pretrained_on == ("wit-400m",)
    assert backbones["videomae-vit-b"].must_declare_pretraining
    assert backbone_info("clip_vit_b16").name == "clip-vit-b16"
    with pytest.raises(FsarbenchError, match="unknown backbone"):
        backbone_info("vit-huge")


# --- bad weights -----------------------------------------------------------------------------


def test_a_folder_without_config_or_weights_is_refused(tmp_path, standin_weights):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FsarbenchError, match=r"no config\.json"):
        CLIPFrameBackbone(pretrained=str(empty))
    (empty / "config.json").write_text("{}")
    with pytest.raises(FsarbenchError, match=r"none of model\.safetensors"):
        CLIPFrameBackbone(pretrained=str(empty))
    with pytest.raises(FsarbenchError, match="not in the local Hugging Face cache"):
        CLIPFrameBackbone(pretrained="openai/clip-vit-base-patch16")


def test_a_checkpoint_of_another_model_is_refused(standin_weights):
    with pytest.raises(
        FsarbenchError, match=r"VideoMAE weights in .* (cannot be loaded|do not fit)"
    ):
        VideoMAEBackbone(pretrained=str(standin_weights["clip"]))


def test_a_clip_state_dict_of_the_wrong_shape_names_the_keys(tmp_path, standin_weights, capsys):
    """A single model.safetensors given for the ViT-B/16 architecture: every mismatch named."""
    source = standin_weights["clip"] / "model.safetensors"
    results = tmp_path / "results"
    argv = [
        "run",
        "--datasets",
        "synth",
        "--methods",
        "protonet",
        "--backbone",
        "clip-vit-b16",
        "--weights",
        str(source),
        "--results-dir",
        str(results),
        "--train",
        "none",
        "--seeds",
        "0",
        "--shots",
        "1",
        "--episodes",
        "5",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "wrong shape: clip.vision_model.embeddings.class_embedding (32,) (expected (768,))" in err
    )
    assert "Hugging Face folder" in err and not results.exists()


def test_weights_folder_for_a_resnet_is_refused(tmp_path, standin_weights, capsys):
    argv = [
        "run",
        "--datasets",
        "synth",
        "--methods",
        "protonet",
        "--backbone",
        "resnet50",
        "--weights",
        str(standin_weights["clip"]),
        "--results-dir",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    assert "loads a state-dict file" in capsys.readouterr().err


def test_videomae_weights_must_declare_their_pretraining(tmp_path, standin_weights, capsys):
    argv = [
        "run",
        "--datasets",
        "synth",
        "--methods",
        "protonet",
        "--backbone",
        "videomae-vit-b",
        "--weights",
        str(standin_weights["videomae"]),
        "--results-dir",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    assert "--pretrained-on kinetics-400" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_clip_fsar_needs_a_clip_backbone(tmp_path, capsys):
    argv = [
        "run",
        "--datasets",
        "synth",
        "--methods",
        "clip_fsar",
        "--results-dir",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    assert "text tower" in capsys.readouterr().err


# --- every method on every tiny backbone ------------------------------------------------------


@pytest.mark.parametrize(
    "backbone,weights,pretrained_on",
    [
        ("resnet18_synth", None, ()),
        ("clip-vit-b16", "clip", ()),
        ("videomae-vit-b", "videomae-finetuned", ("kinetics-400",)),
    ],
)
def test_every_method_runs_on_every_tiny_backbone(
    backbone, weights, pretrained_on, tiny_synth_home, tmp_path, monkeypatch, standin_weights
):
    home = tmp_path / "home"
    shutil.copytree(tiny_synth_home, home)
    monkeypatch.setenv("FSARBENCH_HOME", str(home))
    from fsarbench.names import methods_for_backbone, resolve_methods

    methods, left_out = methods_for_backbone(resolve_methods("all"), backbone)
    assert ("clip_fsar" in methods) == (backbone == "clip-vit-b16")
    assert set(methods) | set(left_out) == set(resolve_methods("all"))
    options = SuiteOptions(
        results_dir=tmp_path / "results",
        progress=False,
        synth=TINY_SYNTH,
        training="none",
        backbone=backbone,
        weights=standin_weights[weights] if weights else None,
        pretrained_on=pretrained_on,
    )
    outcomes = run_suite(methods, resolve_benchmarks("synth"), [None], [1], [0], 20, None, options)
    assert sorted(o.record.method for o in outcomes) == sorted(methods)
    for outcome in outcomes:
        record = load_record(outcome.path)
        expected = backbone if weights is None else f"{backbone}-custom"  # a stand-in's size
        assert record.backbone == expected and record.n_episodes == 20
        assert 0.0 <= record.acc_mean <= 100.0
        assert record.pretrained_on == list(
            pretrained_on or (("wit-400m",) if weights == "clip" else ())
        )


def test_a_stand_in_is_recorded_apart_from_the_architecture_its_name_stands_for(
    standin_weights,
):
    from fsarbench.backbones import architecture_differences

    info = backbone_info("clip-vit-b16")
    differences = architecture_differences(info, standin_weights["clip"])
    assert "hidden_size 32 (not 768)" in differences
    real_like = json.loads((standin_weights["clip"] / "config.json").read_text())
    real_like["vision_config"].update(info.config["arch"])
    assert (
        architecture_differences(
            info, _folder_with_config(standin_weights["clip"].parent / "real-like", real_like)
        )
        == []
    )


def _folder_with_config(folder, config: dict):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"x": torch.zeros(1)}, str(folder / "model.safetensors"))
    return folder
