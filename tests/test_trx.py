"""TRX's known-answer tests TRX-1 to TRX-3 (configs/trx/README.md) and checks of the batched
compare against a per-class loop written as in the paper."""

from __future__ import annotations

import math
from itertools import combinations

import pytest
import torch

from fsarbench.registry import MODELS

TINY_BACKBONE = dict(type="FrameResNet", depth=18, num_stages=1)
CHANNELS = 64  # the tiny backbone's C


def trx(**kw):
    model = MODELS.build(dict(type="trx", backbone=TINY_BACKBONE, **kw))
    model.eval()
    return model.double()


def reference_pe(frames, channels, scale=0.1):
    """PE(t, 2i) = sin(t / 10000^(2i / C)), PE(t, 2i + 1) = cos(...), element by element."""
    pe = torch.zeros(frames, channels, dtype=torch.float64)
    for t in range(frames):
        for i in range(0, channels, 2):
            angle = t / 10000 ** (i / channels)
            pe[t, i] = math.sin(angle)
            pe[t, i + 1] = math.cos(angle)
    return scale * pe


def reference_logits(model, support, labels, query):
    """One episode as the paper describes it, one class and one cardinality at a time."""
    distances = []
    for omega in model.temporal_set:
        frames = support.shape[1]
        pe = reference_pe(frames, support.shape[2]) if model.positional_encoding else 0.0
        index = list(combinations(range(frames), omega))

        def maps(videos, omega=omega, pe=pe, index=index):
            x = videos + pe  # [B, T, C]
            tuples = torch.stack([torch.cat([x[:, t] for t in p], dim=-1) for p in index], 1)
            keys = model.key_norms[str(omega)](model.key_maps[str(omega)](tuples))
            return keys, model.value_maps[str(omega)](tuples)  # [B, P, d] each

        support_keys, support_values = maps(support)
        query_keys, query_values = maps(query)
        per_class = []
        for c in range(int(labels.max()) + 1):
            keys = support_keys[labels == c].flatten(0, 1)  # [K * P, d]
            values = support_values[labels == c].flatten(0, 1)  # [K * P, d]
            scores = query_keys @ keys.T / math.sqrt(keys.shape[-1])  # [Q, P, K * P]
            prototypes = scores.softmax(dim=-1) @ values  # [Q, P, d]
            per_class.append((query_values - prototypes).pow(2).sum(-1).mean(-1))  # [Q]
        distances.append(torch.stack(per_class, dim=1))  # [Q, N]
    distances = torch.stack(distances, dim=-1)  # [Q, N, W]
    if model.combine == "sum":
        return -distances.sum(-1)
    if model.combine == "mean":
        return -distances.mean(-1)
    return -distances.pow(2).sum(-1).sqrt()


# --- TRX-1 ----------------------------------------------------------------------------------


def test_trx1_tuple_enumeration_and_vectors():
    from fsarbench.methods.trx import frame_tuples, sinusoidal_encoding

    pairs, triples = frame_tuples(8, 2), frame_tuples(8, 3)
    assert len(pairs) == 28 and len(triples) == 56
    assert pairs.tolist() == [list(p) for p in combinations(range(8), 2)]
    assert triples.tolist() == [list(p) for p in combinations(range(8), 3)]
    assert pairs[:3].tolist() == [[0, 1], [0, 2], [0, 3]] and triples[-1].tolist() == [5, 6, 7]

    pe = reference_pe(8, CHANNELS)
    assert torch.allclose(sinusoidal_encoding(8, CHANNELS), pe, atol=1e-12)
    assert torch.allclose(pe[0, :4], torch.tensor([0.0, 0.1, 0.0, 0.1], dtype=torch.float64))

    torch.manual_seed(0)
    x = torch.randn(3, 8, CHANNELS, dtype=torch.float64)
    model = trx()
    vectors = model.tuple_vectors(x, 2)  # [3, 28, 2C]
    for p, (i, j) in enumerate(combinations(range(8), 2)):
        expected = torch.cat([x[:, i] + pe[i], x[:, j] + pe[j]], dim=-1)
        assert torch.allclose(vectors[:, p], expected, atol=1e-12)
    triples_x = model.tuple_vectors(x, 3)  # [3, 56, 3C]
    p = list(combinations(range(8), 3)).index((1, 4, 6))
    expected = torch.cat([x[:, 1] + pe[1], x[:, 4] + pe[4], x[:, 6] + pe[6]], dim=-1)
    assert torch.allclose(triples_x[:, p], expected, atol=1e-12)

    # encode's values are Lambda of exactly these vectors (Lambda = I with d_v = 2C)
    model = trx(temporal_set=(2,), trans_linear_out_dim=2 * CHANNELS)
    with torch.no_grad():
        model.value_maps["2"].weight.copy_(torch.eye(2 * CHANNELS))
        model.value_maps["2"].bias.zero_()
    assert torch.allclose(model.encode(x)["values_2"], vectors, atol=1e-12)


def test_trx1_positional_encoding_off_and_dropout_in_training():
    x = torch.randn(2, 8, CHANNELS, dtype=torch.float64)
    off = trx(positional_encoding=False)
    assert torch.equal(off.tuple_vectors(x, 2)[:, 0], torch.cat([x[:, 0], x[:, 1]], dim=-1))
    dropped = trx(dropout=0.5)
    dropped.train()
    vectors = dropped.tuple_vectors(x, 2)
    assert (vectors == 0).any()  # dropout acts in training...
    dropped.eval()
    assert not (dropped.tuple_vectors(x, 2) == 0).any()  # ...and not at test


# --- TRX-2 ----------------------------------------------------------------------------------


def identity_values(model, frames_dim):
    with torch.no_grad():
        for omega in model.temporal_set:
            value_map = model.value_maps[str(omega)]
            value_map.weight.zero_()
            value_map.weight[: omega * frames_dim, : omega * frames_dim] = torch.eye(
                omega * frames_dim
            )
            value_map.bias.zero_()


@pytest.mark.parametrize("omega", [1, 2, 3])
def test_trx2_closed_form(omega):
    """PE off, dropout off, d_k = d_v = omega * D, Lambda = I, every support frame of class c
    equal to e_c: T^omega(Q, c) = (omega / T) sum_t ||q_t - e_c||^2, whatever the keys."""
    torch.manual_seed(omega)
    frames, shots = 8, 3
    model = trx(
        temporal_set=(omega,),
        trans_linear_out_dim=omega * CHANNELS,
        positional_encoding=False,
        dropout=0.0,
    )
    identity_values(model, CHANNELS)
    e = torch.randn(5, CHANNELS, dtype=torch.float64)  # one vector per class
    labels = torch.arange(5).repeat(shots)[torch.randperm(5 * shots)]
    support = e[labels][:, None].expand(-1, frames, -1).clone()  # [15, T, C]
    query = torch.randn(4, frames, CHANNELS, dtype=torch.float64)
    expected = -(omega / frames) * (query[:, None] - e[None, :, None]).pow(2).sum(-1).sum(-1)
    assert torch.allclose(model.head(support, labels, query), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("combine", ["sum", "l2", "mean"])
def test_trx2_closed_form_combined(combine):
    """Omega = {1, 2, 3} with Lambda_omega = I padded with zero rows to d_v = 3D: each T^omega
    has the TRX-2 closed form, so sum / l2 / mean combine (1, 2, 3) * S / T."""
    torch.manual_seed(7)
    frames = 6
    model = trx(
        temporal_set=(1, 2, 3),
        trans_linear_out_dim=3 * CHANNELS,
        positional_encoding=False,
        dropout=0.0,
        combine=combine,
    )
    identity_values(model, CHANNELS)
    e = torch.randn(5, CHANNELS, dtype=torch.float64)
    labels = torch.tensor([3, 1, 4, 0, 2])
    support = e[labels][:, None].expand(-1, frames, -1).clone()
    query = torch.randn(3, frames, CHANNELS, dtype=torch.float64)
    squared = (query[:, None] - e[None, :, None]).pow(2).sum(-1).sum(-1) / frames  # S / T
    factor = {"sum": 6.0, "l2": math.sqrt(14.0), "mean": 2.0}[combine]
    assert torch.allclose(model.head(support, labels, query), -factor * squared, rtol=0, atol=1e-9)


# --- TRX-3 ----------------------------------------------------------------------------------


def test_trx3_support_permutation_within_class():
    torch.manual_seed(3)
    model = trx()
    support, labels = torch.randn(15, 8, CHANNELS, dtype=torch.float64), torch.arange(5).repeat(3)
    query = torch.randn(5, 8, CHANNELS, dtype=torch.float64)
    logits = model.head(support, labels, query)
    # swap shots within class 2 and within class 4 only
    order = torch.arange(15)
    order[[2, 7, 12]] = torch.tensor([12, 2, 7])
    order[[4, 14]] = torch.tensor([14, 4])
    assert torch.equal(labels[order], labels)
    assert torch.allclose(model.head(support[order], labels, query), logits, rtol=0, atol=1e-9)
    # any order of the whole support set
    shuffle = torch.randperm(15)
    assert torch.allclose(
        model.head(support[shuffle], labels[shuffle], query), logits, rtol=0, atol=1e-9
    )


def test_trx3_label_permutation_permutes_columns():
    torch.manual_seed(4)
    model = trx()
    support, labels = torch.randn(10, 8, CHANNELS, dtype=torch.float64), torch.arange(5).repeat(2)
    query = torch.randn(5, 8, CHANNELS, dtype=torch.float64)
    permutation = torch.tensor([2, 4, 0, 1, 3])  # class n becomes permutation[n]
    logits = model.head(support, labels, query)
    relabelled = model.head(support, permutation[labels], query)
    assert torch.allclose(relabelled[:, permutation], logits, rtol=0, atol=1e-9)
    assert not torch.allclose(relabelled, logits, atol=1e-3)


def test_trx3_zero_keys_give_uniform_attention():
    """Upsilon = 0: keys LN(0) = 0, uniform attention, so t^c_p is the mean of the class's
    K * |Pi| value tuples for every p, and T(Q, c) = mean_p ||Lambda Q_p - mean_c||^2."""
    torch.manual_seed(5)
    model = trx(temporal_set=(2,), trans_linear_out_dim=16)
    with torch.no_grad():
        model.key_maps["2"].weight.zero_()
        model.key_maps["2"].bias.zero_()
    frames = 5
    support, labels = (
        torch.randn(10, frames, CHANNELS, dtype=torch.float64),
        torch.arange(5).repeat(2),
    )
    query = torch.randn(3, frames, CHANNELS, dtype=torch.float64)
    pe = reference_pe(frames, CHANNELS)
    pairs = list(combinations(range(frames), 2))

    def values(videos):
        x = videos + pe
        tuples = torch.stack([torch.cat([x[:, i], x[:, j]], -1) for i, j in pairs], 1)
        weight, bias = model.value_maps["2"].weight, model.value_maps["2"].bias
        return tuples @ weight.T + bias  # [B, P, 16]

    support_values, query_values = values(support), values(query)
    means = torch.stack([support_values[labels == c].mean(dim=(0, 1)) for c in range(5)])
    expected = -(query_values[:, None] - means[None, :, None]).pow(2).sum(-1).mean(-1)
    assert torch.allclose(model.head(support, labels, query), expected, rtol=0, atol=1e-9)


# --- the batched compare --------------------------------------------------------------------


@pytest.mark.parametrize("combine", ["sum", "l2", "mean"])
def test_batched_compare_matches_the_per_class_loop(combine):
    torch.manual_seed(6)
    model = trx(trans_linear_out_dim=24, combine=combine)
    labels = torch.arange(5).repeat(3)[torch.randperm(15)]
    support = torch.randn(15, 8, CHANNELS, dtype=torch.float64)
    query = torch.randn(7, 8, CHANNELS, dtype=torch.float64)
    expected = reference_logits(model, support, labels, query)
    assert torch.allclose(model.head(support, labels, query), expected, rtol=0, atol=1e-9)


def test_unequal_shots_per_class():
    torch.manual_seed(8)
    model = trx(trans_linear_out_dim=24)
    labels = torch.tensor([2, 0, 1, 2, 2, 0, 1, 1, 2])  # 2, 3 and 4 shots
    support = torch.randn(9, 6, CHANNELS, dtype=torch.float64)
    query = torch.randn(4, 6, CHANNELS, dtype=torch.float64)
    expected = reference_logits(model, support, labels, query)
    assert torch.allclose(model.head(support, labels, query), expected, rtol=0, atol=1e-9)


def test_chunked_compare_matches_one_chunk():
    torch.manual_seed(9)
    model = trx(trans_linear_out_dim=16)
    support = torch.randn(7, 10, 8, CHANNELS, dtype=torch.float64)
    labels = torch.stack([torch.arange(5).repeat(2)[torch.randperm(10)] for _ in range(7)])
    query = torch.randn(7, 5, 8, CHANNELS, dtype=torch.float64)
    whole = model.head_episodes(support, labels, query)
    model.compare_memory_mib = 0  # one episode per chunk
    assert torch.allclose(model.head_episodes(support, labels, query), whole, rtol=0, atol=1e-12)


def test_float32_matches_float64():
    torch.manual_seed(10)
    model = trx(trans_linear_out_dim=32)
    support, labels = torch.randn(10, 8, CHANNELS, dtype=torch.float64), torch.arange(5).repeat(2)
    query = torch.randn(5, 8, CHANNELS, dtype=torch.float64)
    exact = model.head(support, labels, query)
    single = model.float().head(support.float(), labels, query.float())
    assert torch.allclose(single.double(), exact, rtol=1e-5, atol=1e-5)


def test_short_clips_skip_cardinalities_without_tuples():
    torch.manual_seed(11)
    model = trx(trans_linear_out_dim=16)
    support, labels = torch.randn(5, 2, CHANNELS, dtype=torch.float64), torch.arange(5)
    query = torch.randn(5, 2, CHANNELS, dtype=torch.float64)
    assert set(model.encode(support)) == {"keys_2", "values_2"}
    pairs_only = trx(trans_linear_out_dim=16, temporal_set=(2,))
    pairs_only.load_state_dict(model.state_dict(), strict=False)
    assert torch.allclose(
        model.head(support, labels, query), pairs_only.head(support, labels, query), atol=1e-12
    )
    with pytest.raises(ValueError, match="TRX needs T >= 2"):
        model.encode(torch.randn(2, 1, CHANNELS, dtype=torch.float64))


def test_invalid_options():
    with pytest.raises(ValueError, match="unknown TRX combine"):
        trx(combine="max")
    with pytest.raises(ValueError, match="temporal_set"):
        trx(temporal_set=(2, 2))


def test_parameter_count_per_cardinality():
    """Head parameters: 2 * (omega * D * d + d) plus the key LayerNorm per omega."""
    model = trx(temporal_set=(3,), trans_linear_out_dim=32)
    head = sum(p.numel() for name, p in model.named_parameters() if "backbone" not in name)
    assert head == 2 * (3 * CHANNELS * 32 + 32) + 2 * 32


@pytest.mark.parametrize("shots", [1, 5])
def test_stated_compare_flops_are_the_products_torch_counts(shots):
    """``compare_flops`` states the products that ``compare`` runs: torch's flop counter (what
    tools/speed_heads.py's roofline counts) finds the same work over a batch of episodes (the
    distances, which the statement leaves out, are elementwise and not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(11)
    model = trx(trans_linear_out_dim=32).float()
    episodes, frames = 4, 8
    support = model.encode(torch.randn(episodes * 5 * shots, frames, CHANNELS))
    query = model.encode(torch.randn(episodes * 5, frames, CHANNELS))
    support = {k: v.unflatten(0, (episodes, 5 * shots)) for k, v in support.items()}
    query = {k: v.unflatten(0, (episodes, 5)) for k, v in query.items()}
    labels = torch.stack([torch.arange(5).repeat(shots)[torch.randperm(5 * shots)]] * episodes)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.compare(support, labels, query)
    counted = counter.get_total_flops() / episodes
    stated = model.compare_flops(5, shots, 5, frames)
    assert counted == pytest.approx(stated, rel=1e-6)
