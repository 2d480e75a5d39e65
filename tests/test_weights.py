"""Backbone weights in the layouts they come in: torchvision/MMPretrain ImageNet ResNets and
MMAction2 checkpoints (random-init stand-ins saved in the real formats; nothing downloaded)."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from fsarbench.backbones import load_backbone_weights
from fsarbench.errors import FsarbenchError
from fsarbench.registry import MODELS


def resnet(depth=50, seed=0):
    torch.manual_seed(seed)
    return MODELS.build(dict(type="FrameResNet", depth=depth, num_stages=4))


def torchvision_layout(backbone) -> dict:
    """The state dict torchvision's ``resnet{18,50}()`` would have for these weights, with a
    random 1000-class classifier: written out by torchvision's naming, not fsarbench's."""
    state = {}
    for key, value in backbone.state_dict().items():
        name = key.removeprefix("resnet.")
        name = name.replace("conv1.conv.", "conv1.", 1) if name.startswith("conv1.") else name
        name = name.replace("conv1.bn.", "bn1.", 1) if name.startswith("conv1.bn.") else name
        name = re.sub(r"\.conv(\d)\.conv\.", r".conv\1.", name)
        name = re.sub(r"\.conv(\d)\.bn\.", r".bn\1.", name)
        name = name.replace("downsample.conv.", "downsample.0.").replace(
            "downsample.bn.", "downsample.1."
        )
        state[name] = value.clone()
    width = backbone.out_channels
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, width), torch.randn(1000)
    return state


def test_the_torchvision_layout_is_torchvisions():
    state = torchvision_layout(resnet(50))
    # torchvision's resnet50: 53 convolutions, 53 BatchNorms (5 entries each), fc weight and bias
    assert len(state) == 53 + 53 * 5 + 2 == 320
    assert state["conv1.weight"].shape == (64, 3, 7, 7) and "bn1.running_var" in state
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert state["layer3.0.downsample.0.weight"].shape == (1024, 512, 1, 1)
    assert "layer1.0.downsample.1.num_batches_tracked" in state
    assert state["fc.weight"].shape == (1000, 2048)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_imagenet_resnet50_in_torchvision_layout_loads(tmp_path, suffix):
    source = resnet(50, seed=1)
    path = tmp_path / f"resnet50_imagenet{suffix}"
    state = torchvision_layout(source)
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    target = resnet(50, seed=2)
    load_backbone_weights(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_mmpretrain_and_mmaction_checkpoints_load(tmp_path):
    source = resnet(18, seed=3)
    # MMPretrain: torchvision names under backbone., a head, inside a checkpoint dict
    mmpretrain = {
        f"backbone.{k}": v for k, v in torchvision_layout(source).items() if "fc" not in k
    }
    mmpretrain["head.fc.weight"] = torch.randn(1000, 512)
    torch.save({"meta": {"epoch": 100}, "state_dict": mmpretrain}, tmp_path / "mmpretrain.pth")
    # MMAction2 TSN: its ResNet's own names under backbone., and the classification head
    mmaction = {f"backbone.{k.removeprefix('resnet.')}": v for k, v in source.state_dict().items()}
    mmaction["cls_head.fc_cls.weight"] = torch.randn(400, 512)
    torch.save({"state_dict": mmaction}, tmp_path / "tsn.pth")
    for name in ("mmpretrain.pth", "tsn.pth"):
        target = resnet(18, seed=4)
        load_backbone_weights(target, tmp_path / name)
        assert torch.equal(
            target.state_dict()["resnet.layer4.1.conv2.conv.weight"],
            source.state_dict()["resnet.layer4.1.conv2.conv.weight"],
        )


def test_checkpoints_without_batchnorm_counters_load(tmp_path):
    source = resnet(18, seed=5)
    state = {k: v for k, v in torchvision_layout(source).items() if "num_batches" not in k}
    torch.save(state, tmp_path / "old.pth")
    load_backbone_weights(resnet(18, seed=6), tmp_path / "old.pth")


def test_a_checkpoint_of_the_wrong_shape_names_the_keys(tmp_path):
    torch.save(torchvision_layout(resnet(18)), tmp_path / "resnet18.pth")
    with pytest.raises(FsarbenchError, match="does not fit the backbone") as error:
        load_backbone_weights(resnet(50), tmp_path / "resnet18.pth")
    problem = error.value.problem
    assert "missing: resnet." in problem and "wrong shape: resnet." in problem
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(FsarbenchError, match="holds a Tensor, not a state dict"):
        load_backbone_weights(resnet(18), tmp_path / "tensor.pth")
