"""Checks every registered method must pass (methods.md section 10), over the registry."""

from __future__ import annotations

import pytest
import torch

from fsarbench.config import method_config
from fsarbench.configs import CONFIG_ROOT
from fsarbench.registry import MODELS
from fsarbench.runs import method_configs, registered_methods

TINY_BACKBONE = dict(type="FrameResNet", depth=18, num_stages=1)
CONFIGS = list(method_configs())


def build(name):
    torch.manual_seed(0)
    model = MODELS.build(dict(**method_config(name), backbone=TINY_BACKBONE))
    model.eval()
    return model


def features(model, count, frames=4):
    channels = model.channels
    shape = (
        (count, frames, channels)
        if model.feature_kind == "pooled"
        else (count, frames, channels, 3, 3)
    )
    return torch.randn(*shape)


def test_every_registered_method_has_a_config_folder_with_a_readme():
    for method in registered_methods():
        assert (CONFIG_ROOT / method / f"{method}.py").is_file(), method
        readme = CONFIG_ROOT / method / "README.md"
        assert readme.is_file() and "Deviations" in readme.read_text(), method


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_shape_and_finite_loss(name):
    model = build(name)
    torch.manual_seed(1)
    support, labels = features(model, 10), torch.arange(5).repeat(2)
    query = features(model, 15)
    logits = model.head(support, labels, query)
    assert logits.shape == (15, 5) and torch.isfinite(logits).all()
    loss = model(support, labels, query, torch.arange(5).repeat(3), mode="loss", features=True)
    assert torch.isfinite(loss["loss_cls"])


@pytest.mark.parametrize("name", CONFIGS)
def test_label_permutation_permutes_columns(name):
    model = build(name)
    torch.manual_seed(2)
    support, labels, query = features(model, 10), torch.arange(5).repeat(2), features(model, 5)
    permutation = torch.tensor([3, 0, 4, 1, 2])  # class n becomes class permutation[n]
    logits = model.head(support, labels, query)
    relabelled = model.head(support, permutation[labels], query)
    assert torch.allclose(relabelled[:, permutation], logits, atol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_support_order_does_not_matter(name):
    model = build(name)
    torch.manual_seed(3)
    support, labels, query = features(model, 15), torch.arange(5).repeat(3), features(model, 5)
    order = torch.randperm(15)
    assert torch.allclose(
        model.head(support, labels, query),
        model.head(support[order], labels[order], query),
        atol=1e-5,
    )


@pytest.mark.parametrize("name", CONFIGS)
def test_no_nan_on_constant_input(name):
    model = build(name)
    support = torch.zeros_like(features(model, 5))
    logits = model.head(support, torch.arange(5), torch.zeros_like(features(model, 5)))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", CONFIGS)
def test_batched_heads_match_single_episodes(name):
    model = build(name)
    torch.manual_seed(4)
    support = torch.stack([features(model, 10) for _ in range(3)])
    labels = torch.stack([torch.arange(5).repeat(2)[torch.randperm(10)] for _ in range(3)])
    query = torch.stack([features(model, 5) for _ in range(3)])
    batched = model.head_episodes(support, labels, query)
    single = torch.stack(
        [model.head(s, lab, q) for s, lab, q in zip(support, labels, query, strict=True)]
    )
    assert torch.allclose(batched, single, atol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_backbone_receives_gradients(name):
    model = build(name)
    model.train()
    clips = torch.randint(0, 255, (10, 2, 3, 32, 32), dtype=torch.uint8)
    loss = model(clips[:5], torch.arange(5), clips[5:], torch.arange(5), mode="loss")
    loss["loss_cls"].backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
