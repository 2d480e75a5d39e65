"""TA²N's known-answer tests TA-1..TA-3 (the SC masks, the temporal warp, the SC pooling and
the distance) and checks of the factorised head against a direct, pair-by-pair computation of
TTM, TC, SC and the K-shot prototype."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fsarbench.methods.ta2n import (
    PERTURBATIONS,
    HalvingMaxPool3d,
    coordination_masks,
    framewise_cosine_distance,
    offset_mask,
    temporal_warp,
)
from fsarbench.registry import MODELS

TINY_BACKBONE = dict(type="FrameResNet", depth=18, num_stages=1)  # C = 64
CHANNELS = 64


def ta2n(**kw):
    torch.manual_seed(0)
    model = MODELS.build(dict(type="ta2n", backbone=TINY_BACKBONE, **kw))
    model.eval()
    return model


def randomise(model, seed=1):
    """Non-trivial warps and offsets: the zero-initialised last layers and the BN statistics
    get random values (the zero init would make TTM and SC constant)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (model.locnet[-2], model.offset_net[-2]):
            module.weight.copy_(0.5 * torch.randn(module.weight.shape, generator=generator))
            module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=generator))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.copy_(
                    0.1 * torch.randn(module.num_features, generator=generator)
                )
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model


def maps(count, frames=8, size=4, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, frames, CHANNELS, size, size, generator=generator, dtype=dtype)


# --- an independent, direct implementation of TTM, TC, SC and the K-shot alignment -----------


def direct_mask(offsets, height, width, perturb):
    """Normalised 2-D masks averaged over the perturbations, from Eq. 11's three cases:
    ``offsets [..., 2]``, ``perturb`` a list of (p_x, p_y) -> ``[..., H, W]``."""
    total = 0
    for p_x, p_y in perturb:
        rows = eq11_cases(offsets[..., 1] + p_y, height)  # [..., H]
        cols = eq11_cases(offsets[..., 0] + p_x, width)  # [..., W]
        mask = rows[..., :, None] * cols[..., None, :]
        total = total + mask / mask.sum(dim=(-2, -1), keepdim=True)
    return total / len(perturb)


def eq11_cases(offset, length):
    gamma = (length - 1) / 2
    x = torch.linspace(-1, 1, length, dtype=torch.float64)
    o = offset[..., None]
    left = torch.clamp(1 - gamma * (o - 1 - x), min=0)
    right = torch.clamp(1 - gamma * (x - o - 1), min=0)
    return torch.where((x - o).abs() < 1, 1.0, torch.where(x <= o - 1, left, right))


def grid_sample_warp(features, theta):
    """TTM's warp as the released code computes it (``grid_sample`` on a [N, C, 1, T] map)."""
    frames = features.shape[1]
    t = torch.linspace(-1, 1, frames, dtype=features.dtype)
    u = theta[:, :1] * t + theta[:, 1:]  # [B, T]
    grid = torch.stack([u, -torch.ones_like(u)], dim=-1)[:, None]  # [B, 1, T, 2]
    flat = features.flatten(2).transpose(1, 2)[:, :, None]  # [B, F, 1, T]
    out = F.grid_sample(flat, grid, align_corners=True)  # [B, F, 1, T]
    return out[:, :, 0].transpose(1, 2).reshape(features.shape)


def direct_logits(model, support, labels, query, perturb=False, reference=None):
    """One episode, pair by pair, with the Conv3d over Cat(f~_s, f~_q) at 2C channels."""
    channels = support.shape[2]
    height, width = support.shape[-2:]
    scale = math.sqrt(channels)

    def ttm(x):
        return grid_sample_warp(x, model.locnet(x.transpose(1, 2)))

    s_hat, q_hat = ttm(support), ttm(query)
    n_way = int(labels.max()) + 1
    shots = len(labels) // n_way
    prototypes = []
    for n in range(n_way):
        shots_n = s_hat[labels == n]  # [K, T, C, H, W]
        if shots == 1:
            prototypes.append(shots_n[0])
            continue
        pooled = shots_n.mean(dim=(-2, -1))
        keys = model.align_key(pooled)  # [K, T, C]
        values = torch.einsum("dc,ktchw->ktdhw", model.align_value.weight, shots_n)
        per_reference = []
        for r in range(shots):
            ref = model.align_query(pooled[r])  # [T, C]
            aligned = []
            for k in range(shots):
                attention = (keys[k] @ ref.T / scale).softmax(dim=0)  # [T(x), T(y)], over x
                aligned.append(torch.einsum("xy,xchw->ychw", attention, values[k]))
            per_reference.append(torch.stack(aligned).mean(0))
        if reference is None:
            prototypes.append(torch.stack(per_reference).mean(0))
        else:
            prototypes.append(per_reference[reference[n]])
    if shots > 1:
        q_hat = torch.einsum("dc,qtchw->qtdhw", model.align_value.weight, q_hat)
    f_s, f_q = [], []
    for q in range(len(query)):
        for n in range(n_way):
            s, qm = prototypes[n], q_hat[q]
            s_bar, q_bar = s.mean(dim=(-2, -1)), qm.mean(dim=(-2, -1))  # [T, C]
            m = (model.tc_key(s_bar) @ model.tc_query(q_bar).T / scale).softmax(dim=1)
            f_s.append(s + model.tc_value(s_bar)[..., None, None])
            f_q.append(qm + (m @ model.tc_value(q_bar))[..., None, None])
    f_s, f_q = torch.stack(f_s), torch.stack(f_q)  # [P, T, C, H, W]
    pairs = torch.cat([f_s, f_q], dim=2).transpose(1, 2)  # [P, 2C, T, H, W]
    offsets = model.offset_net(model.offset_conv(pairs)) * model.offset_scale  # [P, 2, T]
    offsets = offsets.transpose(1, 2).detach()  # [P, T, 2]
    directions = (
        [tuple(model.perturb_delta.item() * v for v in p) for p in PERTURBATIONS]
        if perturb
        else [(0.0, 0.0)]
    )
    support_masks = direct_mask(offsets, height, width, directions)  # [P, T, H, W]
    query_masks = direct_mask(-offsets, height, width, directions)
    pooled_s = (support_masks[:, :, None] * f_s).sum(dim=(-2, -1))  # [P, T, C]
    pooled_q = (query_masks[:, :, None] * f_q).sum(dim=(-2, -1))
    logits = -(1 - F.cosine_similarity(pooled_s, pooled_q, dim=-1)).sum(dim=-1)
    return logits.view(len(query), n_way)


# --- TA-1: mask values -----------------------------------------------------------------------

TA1_TABLE = {
    0.0: [1, 1, 1, 1, 1, 1, 1],
    0.5: [0, 0.5, 1, 1, 1, 1, 1],
    -0.5: [1, 1, 1, 1, 1, 0.5, 0],
    0.75: [0, 0, 0.75, 1, 1, 1, 1],
    0.2: [0.4, 1, 1, 1, 1, 1, 1],
}


@pytest.mark.parametrize("offset", sorted(TA1_TABLE))
def test_ta1_mask_values(offset):
    mask = offset_mask(torch.tensor(offset, dtype=torch.float64), 7)
    expected = torch.tensor(TA1_TABLE[offset], dtype=torch.float64)
    assert torch.allclose(mask, expected, atol=1e-9, rtol=0)
    cases = eq11_cases(torch.tensor(offset, dtype=torch.float64), 7)
    assert torch.allclose(mask, cases, atol=1e-12)


def test_ta1_code_convention_is_the_sign_flip():
    """The code's gen_mask(o) is the paper's m(-o): gen_mask(-o) gives the table."""
    offsets = torch.cat([torch.tensor(sorted(TA1_TABLE)), torch.rand(20) * 1.9 - 0.95])
    offsets = offsets.double()
    grid = torch.linspace(-1, 1, 7, dtype=torch.float64)[None] + (-offsets)[:, None]
    full = ((grid > -1) & (grid < 1)).double()
    code = full + F.relu((1 - full) * (1 - (grid.abs() - 1) * 3))
    assert torch.allclose(offset_mask(offsets, 7), code, atol=1e-12)


def test_ta1_masks_are_normalised_and_averaged():
    offsets = torch.tensor([[0.5, -0.3], [0.0, 0.7]], dtype=torch.float64)  # [T=2, (x, y)]
    delta = 0.2
    perturb = torch.tensor(PERTURBATIONS, dtype=torch.float64) * delta
    masks = coordination_masks(offsets, 7, 5, perturb)  # H = 7, W = 5
    assert masks.shape == (2, 7, 5)
    assert torch.allclose(masks.sum(dim=(-2, -1)), torch.ones(2, dtype=torch.float64))
    for t in range(2):
        expected = direct_mask(offsets[t], 7, 5, perturb.tolist())
        assert torch.allclose(masks[t], expected, atol=1e-12)
    # 2-D mask = m_x (x) m_y: the row profile depends on o_y alone, the column one on o_x
    single = coordination_masks(offsets[0], 7, 7)
    rows = offset_mask(offsets[0, 1], 7)
    cols = offset_mask(offsets[0, 0], 7)
    assert torch.allclose(single, torch.outer(rows, cols) / (rows.sum() * cols.sum()))


# --- TA-2: TTM sampling ----------------------------------------------------------------------


def frames_as_values(batch=1, frames=8):
    # frame i holds the value i + 1 everywhere: sampled values read back as positions + 1
    values = torch.arange(1, frames + 1, dtype=torch.float64)
    return values.view(1, frames, 1, 1, 1).expand(batch, frames, 2, 3, 3).clone()


def test_ta2_identity():
    features = maps(3)
    theta = torch.tensor([[1.0, 0.0]] * 3, dtype=torch.float64)
    assert torch.allclose(temporal_warp(features, theta), features, atol=1e-12)


def test_ta2_half_zoom_positions():
    theta = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    out = temporal_warp(frames_as_values(), theta)[0, :, 0, 0, 0] - 1  # positions
    expected = torch.tensor([1.75, 2.25, 2.75, 3.25, 3.75, 4.25, 4.75, 5.25], dtype=torch.float64)
    assert torch.allclose(out, expected, atol=1e-9)
    features = maps(1)
    warped = temporal_warp(features, theta)
    assert torch.allclose(warped[0, 0], 0.25 * features[0, 1] + 0.75 * features[0, 2])


def test_ta2_initial_warp():
    model = ta2n().double()
    theta = model.warp_parameters(maps(4))
    expected = torch.tensor([math.tanh(2.0), 0.0], dtype=torch.float64)
    assert torch.allclose(theta, expected.expand(4, 2), atol=1e-12)
    positions = temporal_warp(frames_as_values(), theta[:1])[0, :, 0, 0, 0] - 1
    t = torch.linspace(-1, 1, 8, dtype=torch.float64)
    assert torch.allclose(positions, (math.tanh(2.0) * t + 1) / 2 * 7, atol=1e-9)
    assert abs(positions[0] - 0.126) < 1e-3 and abs(positions[1] - 1.090) < 1e-3
    assert abs(positions[-1] - 6.874) < 1e-3


def test_ta2_outside_reads_zeros():
    theta = torch.tensor([[0.9, 0.9]], dtype=torch.float64)
    out = temporal_warp(frames_as_values(), theta)[0, :, 0, 0, 0]
    u = 0.9 * torch.linspace(-1, 1, 8, dtype=torch.float64) + 0.9
    position = (u + 1) / 2 * 7
    assert (out[u >= 1 + 2 / 7] == 0).all() and (out[u >= 1 + 2 / 7]).numel() > 0
    partial = (u > 1) & (u < 1 + 2 / 7)  # between the last frame and the zero beyond it
    assert torch.allclose(out[partial], 8 * (1 - (position[partial] - 7)))
    assert torch.allclose(out[u <= 1], position[u <= 1] + 1)


def test_ta2_matches_grid_sample():
    features = maps(5, frames=6)
    theta = torch.rand(5, 2, dtype=torch.float64) * 2 - 1
    assert torch.allclose(temporal_warp(features, theta), grid_sample_warp(features, theta))


# --- TA-3: degenerate ACM --------------------------------------------------------------------


def test_ta3_zero_offsets_are_average_pooling():
    masks = coordination_masks(torch.zeros(3, 2, dtype=torch.float64), 7, 7)
    assert torch.allclose(masks, torch.full((3, 7, 7), 1 / 49, dtype=torch.float64))
    # the model at init (offset predictor zero) in eval (no perturbation) == SC switched off
    support, labels, query = maps(5, seed=1), torch.tensor([3, 1, 0, 4, 2]), maps(4, seed=2)
    full = ta2n().double()
    no_sc = ta2n(use_sc=False).double()
    assert torch.allclose(full.head(support, labels, query), no_sc.head(support, labels, query))


def test_ta3_uniform_attention_adds_the_mean_value():
    model = ta2n(use_ttm=False, use_sc=False).double()
    with torch.no_grad():
        model.tc_key.weight.zero_()
    support, labels, query = maps(5, seed=3), torch.arange(5), maps(2, seed=4)
    s_bar, q_bar = support.mean(dim=(-2, -1)), query.mean(dim=(-2, -1))  # [.., T, C]
    f_s = s_bar + model.tc_value(s_bar)  # [N, T, C]
    added = model.tc_value(q_bar).mean(dim=1, keepdim=True)  # mean_y W_v q[:, y]: [Q, 1, C]
    f_q = q_bar + added  # the same vector at every query time
    expected = -framewise_cosine_distance(f_s[None], f_q[:, None])
    assert torch.allclose(model.head(support, labels, query), expected, atol=1e-9)


def test_ta3_distance_range():
    f = torch.randn(6, 8, 32, dtype=torch.float64)
    assert torch.allclose(framewise_cosine_distance(f, f), torch.zeros(6, dtype=torch.float64))
    assert torch.allclose(framewise_cosine_distance(f, -f), torch.full((6,), 16.0).double())
    d = framewise_cosine_distance(f, torch.randn(6, 8, 32, dtype=torch.float64))
    assert ((d >= 0) & (d <= 16)).all()


# --- the factorised head equals the direct computation --------------------------------------


@pytest.mark.parametrize("perturb_at_test", [False, True])
def test_one_shot_matches_direct(perturb_at_test):
    model = randomise(ta2n(perturb_at_test=perturb_at_test).double())
    support, labels, query = maps(5, seed=5), torch.tensor([2, 0, 4, 1, 3]), maps(3, seed=6)
    logits = model.head(support, labels, query)
    expected = direct_logits(model, support, labels, query, perturb=perturb_at_test)
    assert torch.allclose(logits, expected, atol=1e-9)


def test_one_shot_matches_direct_on_7x7_and_non_square_maps():
    model = randomise(ta2n().double())
    for size in ((7, 7), (3, 5)):
        generator = torch.Generator().manual_seed(7)
        support = torch.randn(3, 8, CHANNELS, *size, generator=generator, dtype=torch.float64)
        query = torch.randn(2, 8, CHANNELS, *size, generator=generator, dtype=torch.float64)
        labels = torch.tensor([1, 2, 0])
        logits = model.head(support, labels, query)
        assert torch.allclose(logits, direct_logits(model, support, labels, query), atol=1e-9)


def test_k_shot_matches_direct_with_references_averaged():
    model = randomise(ta2n().double())
    labels = torch.tensor([1, 0, 2, 2, 0, 1, 0, 1, 2])  # 3-way 3-shot, shuffled
    support, query = maps(9, seed=8), maps(4, seed=9)
    logits = model.head(support, labels, query)
    assert torch.allclose(logits, direct_logits(model, support, labels, query), atol=1e-9)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(model.head(support[order], labels[order], query), logits, atol=1e-9)


def test_training_matches_direct_with_batch_statistics_and_perturbation():
    model = randomise(ta2n(dropout=0.0, shot_reference="mean").double())
    model.train()
    for labels in (torch.tensor([2, 0, 1]), torch.tensor([0, 1, 1, 0])):
        support, query = maps(len(labels), seed=10), maps(4, seed=11)
        logits = model.head(support, labels, query)
        expected = direct_logits(model, support, labels, query, perturb=True)
        assert torch.allclose(logits, expected, atol=1e-9)


def test_training_draws_a_random_reference_per_class():
    """In training each class's prototype aligns its shots to one shot drawn from torch's
    global generator; in eval it averages over every choice (test above)."""
    model = randomise(ta2n(dropout=0.0).double())
    support, labels = maps(6, seed=12), torch.tensor([0, 1, 2, 0, 1, 2])
    grouped_order = labels.argsort(stable=True)  # shots of class n at 2n, 2n + 1
    encoded = model.encode(support, shots=2)  # eval: TTM on running statistics
    encoded = {name: value[None] for name, value in encoded.items()}  # one episode
    model.train()
    torch.manual_seed(5)
    reference = torch.randint(2, (1, 3))[0].tolist()
    torch.manual_seed(5)
    value = model.align_value.weight  # prototypes are formed before W'_v (linear, commutes)
    drawn = model._prototypes(encoded, grouped_order[None], 3)["maps"][0]  # [N, T, C, H, W]
    drawn = torch.einsum("dc,ntchw->ntdhw", value, drawn)
    model.eval()
    averaged = model._prototypes(encoded, grouped_order[None], 3)["maps"][0]
    averaged = torch.einsum("dc,ntchw->ntdhw", value, averaged)
    for n in range(3):
        shots = support[grouped_order][2 * n : 2 * n + 2]
        single = direct_prototype(model, shots, reference[n])
        assert torch.allclose(drawn[n], single, atol=1e-9)
        mean = (direct_prototype(model, shots, 0) + direct_prototype(model, shots, 1)) / 2
        assert torch.allclose(averaged[n], mean, atol=1e-9)
    assert not torch.allclose(direct_prototype(model, shots, 0), direct_prototype(model, shots, 1))


def direct_prototype(model, shots, reference):
    s_hat = grid_sample_warp(shots, model.locnet(shots.transpose(1, 2)))
    pooled = s_hat.mean(dim=(-2, -1))
    values = torch.einsum("dc,ktchw->ktdhw", model.align_value.weight, s_hat)
    ref = model.align_query(pooled[reference])
    keys = model.align_key(pooled)
    aligned = [
        torch.einsum("xy,xchw->ychw", (keys[k] @ ref.T / 8.0).softmax(0), values[k])
        for k in range(len(shots))
    ]
    return torch.stack(aligned).mean(0)


def test_tc_without_residual_is_paper_eq3():
    model = randomise(ta2n(use_ttm=False, tc_residual=False).double())
    support, labels, query = maps(5, seed=14), torch.arange(5), maps(3, seed=15)
    s_bar, q_bar = support.mean(dim=(-2, -1)), query.mean(dim=(-2, -1))
    m = torch.einsum("nxc,qyc->qnxy", model.tc_key(s_bar), model.tc_query(q_bar)) / 8.0
    aligned = m.softmax(dim=-1) @ model.tc_value(q_bar)[:, None]  # [Q, N, T, C]
    expected = -framewise_cosine_distance(model.tc_value(s_bar)[None], aligned)
    assert torch.allclose(model.head(support, labels, query), expected, atol=1e-9)


def test_chunking_does_not_change_logits():
    model = randomise(ta2n())
    support = maps(15, seed=16, dtype=torch.float32).unflatten(0, (3, 5))
    labels = torch.stack([torch.randperm(5) for _ in range(3)])
    query = maps(6, seed=17, dtype=torch.float32).unflatten(0, (3, 2))
    whole = model.head_episodes(support, labels, query)
    model.pair_chunk = 1
    assert torch.allclose(model.head_episodes(support, labels, query), whole, atol=1e-6)


def test_unequal_shots_are_refused():
    model = ta2n()
    with pytest.raises(ValueError, match="same number of shots"):
        model.head(maps(4).float(), torch.tensor([0, 0, 0, 1]), maps(1).float())


# --- pooling, perturbation schedule, dropout, gradients --------------------------------------


@pytest.mark.parametrize(
    ("shape", "sizes"),
    [
        ((8, 7, 7), [(4, 3, 3), (2, 1, 1)]),  # the paper's maps, as the code pools them
        ((8, 4, 4), [(4, 2, 2), (2, 1, 1)]),  # synth
        ((4, 3, 3), [(2, 1, 1), (1, 1, 1)]),  # the generic tests
        ((1, 1, 1), [(1, 1, 1), (1, 1, 1)]),
    ],
)
def test_pooling_never_empties_a_dimension(shape, sizes):
    x = torch.randn(2, 3, *shape)
    pool = HalvingMaxPool3d(time=True)
    for size in sizes:
        x = pool(x)
        assert tuple(x.shape[2:]) == size
    spatial = HalvingMaxPool3d(time=False)(torch.randn(2, 3, 8, 7, 7))
    assert tuple(spatial.shape[2:]) == (8, 3, 3)


@pytest.mark.parametrize(("frames", "size"), [(1, 1), (2, 2), (3, 5)])
def test_small_inputs(frames, size):
    model = randomise(ta2n())
    support = torch.randn(10, frames, CHANNELS, size, size)
    logits = model.head(
        support, torch.arange(5).repeat(2), torch.randn(5, frames, CHANNELS, size, size)
    )
    assert logits.shape == (5, 5) and torch.isfinite(logits).all()


def test_perturbation_decays_every_n_training_iterations():
    model = ta2n(perturb_decay_every=2)
    support, labels = torch.randn(5, 4, CHANNELS, 3, 3), torch.arange(5)
    query, query_labels = torch.randn(5, 4, CHANNELS, 3, 3), torch.arange(5)
    model.decay()
    assert model.perturb_delta.item() == pytest.approx(0.1)
    model.train()
    deltas = []
    for _ in range(4):
        model(support, labels, query, query_labels, mode="loss", features=True)
        deltas.append(model.perturb_delta.item())
    assert deltas == pytest.approx([0.1, 0.05, 0.05, 0.025])
    model.eval()
    model(support, labels, query, query_labels, mode="loss", features=True)
    assert int(model.train_iterations) == 4  # evaluation does not count
    state = model.state_dict()
    assert state["train_iterations"] == 4 and state["perturb_delta"] == pytest.approx(0.025)
    never = ta2n(perturb_decay_every=None).train()
    never(support, labels, query, query_labels, mode="loss", features=True)
    assert never.perturb_delta.item() == pytest.approx(0.2)


def test_perturbation_is_off_at_test_by_default():
    support, labels, query = maps(5, seed=18), torch.arange(5), maps(3, seed=19)
    default, perturbed = randomise(ta2n().double()), randomise(ta2n(perturb_at_test=True).double())
    a, b = default.head(support, labels, query), perturbed.head(support, labels, query)
    assert not torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a, direct_logits(default, support, labels, query), atol=1e-9)


def test_dropout_only_in_training():
    model = ta2n(use_ttm=False)
    features = torch.randn(2, 4, CHANNELS, 3, 3)
    assert torch.equal(model.encode(features)["maps"], model.encode(features)["maps"])
    model.train()
    torch.manual_seed(0)
    dropped = model.encode(features, shots=1)["maps"]
    assert (dropped == 0).float().mean() > 0.3


def test_encode_without_shots_serves_both_branches():
    model = ta2n()
    encoded = model.encode(torch.randn(3, 4, CHANNELS, 3, 3))
    assert {"maps", "one_value", "many_value", "align_key", "align_query"} <= set(encoded)
    assert all(value.shape[0] == 3 for value in encoded.values())
    one = model.encode(torch.randn(3, 4, CHANNELS, 3, 3), shots=1)
    assert not any(name.startswith(("many_", "align_")) for name in one)


def test_every_stage_trains():
    model = ta2n(dropout=0.0)
    model.train()
    support, labels = torch.randn(10, 4, CHANNELS, 3, 3), torch.arange(5).repeat(2)
    query = torch.randn(10, 4, CHANNELS, 3, 3)
    loss = model(support, labels, query, torch.arange(5).repeat(2), mode="loss", features=True)
    loss["loss_cls"].backward()
    for module in (model.locnet, model.tc_key, model.align_value, model.offset_net[-2]):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
