"""OTAM's known-answer tests OT-1..OT-5 and CL-3 (listed in configs/otam/README.md), which
CLIP-FSAR's head relies on through :func:`otam_distance`."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from fsarbench.methods.otam import otam_directions, otam_distance
from fsarbench.registry import MODELS

TINY_BACKBONE = dict(type="FrameResNet", depth=18, num_stages=1)
TABLE_TOL = 1e-6  # the OT-4 regression table gives six decimals


def otam(**kw):
    model = MODELS.build(dict(type="otam", backbone=TINY_BACKBONE, **kw))
    model.eval()
    return model


def warp_example(dtype=torch.float64):
    """OT-4: query q = e0..e7; support s = e0,e0,e1,e2,e3,e3,e4,e5 (a monotone warp)."""
    basis = torch.eye(8, dtype=dtype)
    return basis, basis[[0, 0, 1, 2, 3, 3, 4, 5]]


def warp_cost(dtype=torch.float64):
    query, support = warp_example(dtype)
    return 1.0 - query @ support.T  # [8, 8], rows = query, exact 0/1 entries


def brute_force_hard(cost: torch.Tensor) -> float:
    """min over l_1 <= ... <= l_M with steps in {0, 1} (l_1 and l_M free) of sum_j D(l_j, j)."""
    rows, cols = cost.shape
    best = math.inf
    for start in range(rows):
        for steps in itertools.product((0, 1), repeat=cols - 1):
            path = [start + sum(steps[:j]) for j in range(cols)]
            if path[-1] < rows:
                best = min(best, sum(float(cost[row, j]) for j, row in enumerate(path)))
    return best


def brute_force_soft(cost, lbda, first_col_vertical=False, last_col_vertical=True) -> float:
    """-lbda log sum over every path of the padded grid of exp(-path cost / lbda): the recursion
    of ``otam_distance`` restated as a sum over paths (column 0 is a free start at every row)."""
    rows, cols = cost.shape

    def predecessors(row, j):
        if j == 0:
            return []  # a start
        if row == 0:
            return [(0, j - 1)]
        cells = [(row - 1, j - 1), (row, j - 1)]
        if (j == 1 and first_col_vertical) or (j == cols + 1 and last_col_vertical):
            cells.append((row - 1, j))
        return cells

    def path_costs(row, j):
        here = float(cost[row, j - 1]) if 1 <= j <= cols else 0.0
        before = predecessors(row, j)
        if not before:
            return [here]
        return [here + c for cell in before for c in path_costs(*cell)]

    costs = torch.tensor(path_costs(rows - 1, cols + 1), dtype=torch.float64)
    return float(-lbda * torch.logsumexp(-costs / lbda, dim=0))


def test_ot1_hard_value_is_the_brute_force_minimum():
    generator = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    for _ in range(60):
        rows, cols = rng.randint(2, 6), rng.randint(2, 6)
        cost = torch.rand(rows, cols, generator=generator, dtype=torch.float64) * 2
        assert float(otam_distance(cost, lbda=0.0)) == pytest.approx(
            brute_force_hard(cost), abs=1e-12
        )


@pytest.mark.parametrize("first_col_vertical", [False, True])
@pytest.mark.parametrize("last_col_vertical", [True, False])
def test_ot1_soft_value_is_the_sum_over_paths(first_col_vertical, last_col_vertical):
    generator = torch.Generator().manual_seed(1)
    for rows, cols in [(2, 2), (3, 2), (2, 4), (4, 3), (4, 4)]:
        cost = torch.rand(rows, cols, generator=generator, dtype=torch.float64) * 2
        flags = dict(first_col_vertical=first_col_vertical, last_col_vertical=last_col_vertical)
        expected = brute_force_soft(cost, 0.3, **flags)
        assert float(otam_distance(cost, lbda=0.3, **flags)) == pytest.approx(expected, abs=1e-12)


def test_ot1_batched_matches_one_pair_at_a_time():
    generator = torch.Generator().manual_seed(2)
    cost = torch.rand(3, 4, 5, 7, generator=generator, dtype=torch.float64)  # [..., L=5, M=7]
    batched = otam_distance(cost, lbda=0.1)  # [3, 4]
    single = torch.stack([otam_distance(c, lbda=0.1) for c in cost.flatten(0, 1)]).view(3, 4)
    assert torch.allclose(batched, single, atol=1e-12, rtol=0)
    float32 = otam_distance(cost.float(), lbda=0.1)
    assert torch.allclose(float32.double(), batched, atol=1e-5, rtol=0)


def test_ot2_smoothing_bounds_and_first_col_variant():
    generator = torch.Generator().manual_seed(3)
    rng = random.Random(3)
    for _ in range(40):
        rows, cols = rng.randint(2, 8), rng.randint(2, 8)
        cost = torch.rand(rows, cols, generator=generator, dtype=torch.float64) * 2
        hard = otam_distance(cost, lbda=0.0)
        for lbda in (0.05, 0.1, 0.5):
            soft = otam_distance(cost, lbda=lbda)
            assert hard - lbda * (rows + cols + 2) * math.log(3) <= soft <= hard
            assert otam_distance(cost, lbda=lbda, first_col_vertical=True) <= soft
        assert otam_distance(cost, lbda=0.0, first_col_vertical=True) <= hard


def test_ot3_gradient_is_an_alignment_with_unit_column_mass():
    generator = torch.Generator().manual_seed(4)
    cost = torch.rand(6, 5, generator=generator, dtype=torch.float64).requires_grad_()
    (gradient,) = torch.autograd.grad(otam_distance(cost, lbda=0.1), cost)
    assert torch.allclose(gradient.sum(dim=0), torch.ones(5, dtype=torch.float64), atol=1e-6)
    assert (gradient >= 0).all()
    (variant,) = torch.autograd.grad(otam_distance(cost, lbda=0.1, first_col_vertical=True), cost)
    assert variant[:, 0].sum() > 1.0 + 1e-6  # the extra vertical move double-counts column 1
    assert torch.allclose(variant[:, 1:].sum(dim=0), torch.ones(4, dtype=torch.float64), atol=1e-6)


def test_ot4_warp_hard_values_and_frame_order_methods():
    cost = warp_cost()
    assert float(otam_distance(cost, lbda=0.0)) == 0.0  # q -> s: the warp costs nothing
    assert float(otam_distance(cost.T, lbda=0.0)) == 4.0  # s -> q
    # The buggy 2-term last column (Perrett's library up to b9c46a0) loses the free end.
    assert float(otam_distance(cost, lbda=0.0, last_col_vertical=False)) == 3.0
    # Frame-order methods see a difference where OTAM sees none.
    query, support = warp_example()
    assert float(cost.diagonal().sum()) == 7.0  # sum_t 1 - cos(q_t, s_t)
    assert float((query.mean(0) - support.mean(0)).pow(2).sum()) == pytest.approx(0.0625)


@pytest.mark.parametrize(
    ("lbda", "first_col_vertical", "q2s", "s2q"),
    [
        (0.1, False, -0.069333, 3.604864),
        (0.5, False, -0.655334, 1.812259),
        (0.1, True, -0.069333, 3.564315),
        (0.5, True, -0.665770, 1.574668),
    ],
)
def test_ot4_regression_table(lbda, first_col_vertical, q2s, s2q):
    cost = warp_cost()
    flags = dict(lbda=lbda, first_col_vertical=first_col_vertical)
    assert float(otam_distance(cost, **flags)) == pytest.approx(q2s, abs=TABLE_TOL)
    assert float(otam_distance(cost.T, **flags)) == pytest.approx(s2q, abs=TABLE_TOL)
    # The same numbers through the head (float32): rows = query, padded columns = support.
    query, support = warp_example(torch.float32)
    labels = torch.tensor([0])
    for direction, expected in (("q2s", q2s), ("s2q", s2q), ("avg", (q2s + s2q) / 2)):
        model = otam(direction=direction, **flags)
        logits = model.head(support[None], labels, query[None])  # [1, 1]
        assert float(logits) == pytest.approx(-expected, abs=1e-5)


def test_ot5_self_distance():
    generator = torch.Generator().manual_seed(5)
    frames = torch.nn.functional.normalize(
        torch.randn(8, 16, generator=generator, dtype=torch.float64), dim=-1
    )
    cost = 1.0 - frames @ frames.T  # [8, 8], zero diagonal up to rounding
    assert float(otam_distance(cost, lbda=0.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(otam_distance(cost, lbda=0.1)) <= 0.0


@pytest.mark.parametrize("direction", ["avg", "sum"])
def test_ot5_two_way_directions_are_symmetric(direction):
    torch.manual_seed(6)
    model = otam(direction=direction)
    first, second = torch.randn(5, 8, 32), torch.randn(5, 8, 32)
    labels = torch.arange(5)
    forward = model.head(first, labels, second)  # [Q, N]: d(second_q, first_n)
    backward = model.head(second, labels, first)  # d(first_q, second_n)
    assert torch.allclose(forward, backward.T, atol=1e-5)
    one_way = otam(direction="q2s")
    assert not torch.allclose(
        one_way.head(first, labels, second), one_way.head(second, labels, first).T, atol=1e-3
    )


def test_cl3_bidirectional_sum_for_clip_fsar():
    flags = dict(lbda=0.5, first_col_vertical=True)
    total = otam_directions(warp_cost(), "sum", **flags)
    assert float(total) == pytest.approx(0.908898, abs=TABLE_TOL)
    assert float(total) == pytest.approx(float(otam_directions(warp_cost().T, "sum", **flags)))


def test_timeflip_avg_averages_with_the_reversed_sequences():
    generator = torch.Generator().manual_seed(7)
    cost = torch.rand(4, 6, 8, generator=generator, dtype=torch.float64)
    expected = (otam_distance(cost) + otam_distance(cost.flip(-2, -1))) / 2
    assert torch.allclose(otam_directions(cost, "timeflip_avg"), expected, atol=1e-12)
    nonsquare = torch.rand(3, 5, 7, generator=generator, dtype=torch.float64)
    expected = (otam_distance(nonsquare) + otam_distance(nonsquare.mT)) / 2
    assert torch.allclose(otam_directions(nonsquare, "avg"), expected, atol=1e-12)


def test_kshot_mean_dist_and_proto_first():
    torch.manual_seed(8)
    support, labels = torch.randn(6, 5, 16), torch.tensor([2, 0, 1, 1, 0, 2])
    query = torch.randn(3, 5, 16)
    unit = torch.nn.functional.normalize

    def distance(q, s):  # one query-support pair, avg direction
        cost = 1.0 - unit(q, dim=-1) @ unit(s, dim=-1).T
        return otam_directions(cost, "avg", lbda=0.1)

    per_shot = torch.stack([torch.stack([distance(q, s) for s in support]) for q in query])
    expected = torch.stack([per_shot[:, labels == n].mean(1) for n in range(3)], dim=1)
    assert torch.allclose(otam().head(support, labels, query), -expected, atol=1e-5)

    prototypes = torch.stack([support[labels == n].mean(0) for n in range(3)])  # raw mean
    expected = torch.stack([torch.stack([distance(q, p) for p in prototypes]) for q in query])
    logits = otam(kshot="proto_first").head(support, labels, query)
    assert torch.allclose(logits, -expected, atol=1e-5)


def test_no_parameters_of_its_own():
    model = otam()
    backbone = {id(p) for p in model.backbone.parameters()}
    assert all(id(p) in backbone for p in model.parameters())


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (dict(direction="both"), "unknown OTAM direction"),
        (dict(kshot="max"), "unknown OTAM kshot"),
        (dict(lbda=-0.1), "lbda must be"),
    ],
)
def test_bad_options(option, message):
    with pytest.raises(ValueError, match=message):
        otam(**option)
