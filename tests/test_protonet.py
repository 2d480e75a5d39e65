"""ProtoNet's known-answer tests PN-1..PN-3 (listed in configs/protonet/README.md)."""

from __future__ import annotations

import pytest
import torch

from fsarbench.registry import MODELS

TINY_BACKBONE = dict(type="FrameResNet", depth=18, num_stages=1)


def protonet(metric="sqeuclid_mean", **kw):
    model = MODELS.build(dict(type="protonet", backbone=TINY_BACKBONE, metric=metric, **kw))
    model.eval()
    return model


def test_pn1_closed_form():
    support = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])  # [2, T=2, C=2]
    labels = torch.tensor([0, 1])
    mixed = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # v_q = (.5, .5)
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    model = protonet()
    assert torch.allclose(model.head(support, labels, mixed), torch.tensor([[-0.5, -0.5]]))
    assert torch.allclose(model.head(support, labels, same), torch.tensor([[0.0, -2.0]]))


def test_pn2_frame_order():
    torch.manual_seed(0)
    support, labels = torch.randn(10, 8, 16), torch.arange(5).repeat(2)
    query = torch.randn(5, 8, 16)
    permuted = query[:, torch.randperm(8)]
    mean_metric = protonet()
    assert torch.allclose(
        mean_metric.head(support, labels, query),
        mean_metric.head(support, labels, permuted),
        atol=1e-5,
    )
    framewise = protonet("cos_framewise")
    assert not torch.allclose(
        framewise.head(support, labels, query),
        framewise.head(support, labels, permuted),
        atol=1e-4,
    )


def test_pn3_prototype_algebra():
    torch.manual_seed(1)
    shot = torch.randn(1, 4, 8)
    support = shot.repeat(3, 1, 1)
    model = protonet()
    query = torch.randn(2, 4, 8)
    two_way_support = torch.cat([support, torch.randn(3, 4, 8)])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    logits = model.head(two_way_support, labels, query)
    expected = -(query.mean(1) - shot.mean(1)).pow(2).sum(-1)  # prototype == the repeated shot
    assert torch.allclose(logits[:, 0], expected, atol=1e-5)

    support, labels, query = torch.randn(10, 4, 8), torch.arange(5).repeat(2), torch.randn(3, 4, 8)
    logits = model.head(support, labels, query)
    v_q, v_s = query.mean(1), support.mean(1)
    prototypes = torch.stack([v_s[labels == n].mean(0) for n in range(5)])
    linear = 2 * v_q @ prototypes.T - prototypes.pow(2).sum(-1)
    assert torch.allclose(logits + v_q.pow(2).sum(-1, keepdim=True), linear, atol=1e-5)


def test_cos_mean_temperature_and_learning():
    support, labels, query = torch.randn(5, 4, 8), torch.arange(5), torch.randn(2, 4, 8)
    fixed = protonet("cos_mean", temperature=10.0)
    cosine = torch.nn.functional.cosine_similarity(
        query.mean(1)[:, None], support.mean(1)[None], dim=-1
    )
    assert torch.allclose(fixed.head(support, labels, query), 10 * cosine, atol=1e-5)
    learned = protonet("cos_mean", learn_temperature=True)
    assert any(name.endswith("log_temperature") for name, _ in learned.named_parameters())


def test_tsn_ln_dot_averages_per_shot_scores():
    torch.manual_seed(2)
    model = protonet("tsn_ln_dot")
    channels = model.channels
    support, labels = torch.randn(6, 4, channels), torch.tensor([1, 0, 1, 0, 2, 2])
    query = torch.randn(3, 4, channels)
    norm = model.norm
    shots = norm(query.mean(1)) @ norm(support.mean(1)).T  # [Q, S]
    expected = torch.stack([shots[:, labels == n].mean(1) for n in range(3)], dim=1)
    assert torch.allclose(model.head(support, labels, query), expected, atol=1e-4)


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown ProtoNet metric"):
        protonet("manhattan")


@pytest.mark.parametrize("difference_bytes", [1, 4096, 1 << 30])
def test_squared_distances_in_cache_sized_chunks_are_the_whole_batch_bit_for_bit(
    monkeypatch, difference_bytes
):
    from methods import protonet as module

    generator = torch.Generator().manual_seed(0)
    query = torch.randn(7, 5, 48, generator=generator)  # [E, Q, C]
    prototypes = torch.randn(7, 5, 48, generator=generator)  # [E, N, C]
    whole = (query[:, :, None] - prototypes[:, None]).pow(2).sum(dim=-1)
    monkeypatch.setattr(module, "DIFFERENCE_BYTES", difference_bytes)
    with torch.inference_mode():
        chunked = module.squared_distances(query, prototypes)
    assert torch.equal(chunked, whole)
