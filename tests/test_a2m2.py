"""A²M²-Net (reconstruction) and the exact EMD solver: known-answer tests A2-1..A2-4
(listed in configs/a2m2/README.md), the solver against POT, and the envelope-theorem gradients."""

from __future__ import annotations

import os

import numpy as np
import ot
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from fsarbench.methods.a2m2 import count_candidates, isqrt_newton_schulz
from fsarbench.ot import default_threads, emd, emd_batch, sinkhorn
from fsarbench.registry import MODELS

TINY_BACKBONE = dict(type="FrameResNet", depth=18, num_stages=1)  # C = 64
SMALL = dict(reduce_dim=8, scorer_hidden=16)


def a2m2(**kw):
    torch.manual_seed(0)
    model = MODELS.build(dict(type="a2m2", backbone=TINY_BACKBONE, **{**SMALL, **kw}))
    return model.eval()


def random_problems(count, n, m, seed=0):
    rng = np.random.default_rng(seed)
    cost = rng.random((count, n, m))
    a, b = rng.random((count, n)) + 0.01, rng.random((count, m)) + 0.01
    return cost, a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)


# --- the solver ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(18, 18), (18, 90), (5, 3), (1, 4)])
def test_solver_matches_pot(n, m):
    cost, a, b = random_problems(40, n, m, seed=n + m)
    solution = emd_batch(cost, a, b, threads=1)
    for p in range(len(cost)):
        assert solution.cost[p] == pytest.approx(ot.emd2(a[p], b[p], cost[p]), abs=1e-12)
        plan, log = ot.emd(a[p], b[p], cost[p], log=True)
        np.testing.assert_allclose(solution.plan[p], plan, atol=1e-12)
        np.testing.assert_allclose(solution.alpha[p], log["u"], atol=1e-10)
        np.testing.assert_allclose(solution.beta[p], log["v"], atol=1e-10)
    # the plan is feasible and its cost is the value
    np.testing.assert_allclose(solution.plan.sum(2), a, atol=1e-12)
    np.testing.assert_allclose(solution.plan.sum(1), b, atol=1e-12)
    np.testing.assert_allclose((solution.plan * cost).sum((1, 2)), solution.cost, atol=1e-12)


def test_solver_threads_give_the_serial_answer():
    cost, a, b = random_problems(300, 18, 18, seed=1)
    serial, threaded = emd_batch(cost, a, b, threads=1), emd_batch(cost, a, b, threads=3)
    np.testing.assert_array_equal(serial.cost, threaded.cost)
    np.testing.assert_array_equal(serial.plan, threaded.plan)
    np.testing.assert_array_equal(serial.alpha, threaded.alpha)
    lean = emd_batch(cost, a, b, threads=2, plans=False, duals=False)
    np.testing.assert_array_equal(serial.cost, lean.cost)
    assert lean.plan is None and lean.alpha is None


def test_solver_zero_weights_like_pot():
    cost, a, b = random_problems(5, 6, 4, seed=2)
    a[:, 0] = 0.0
    a /= a.sum(1, keepdims=True)
    solution = emd_batch(cost, a, b)
    for p in range(5):
        _, log = ot.emd(a[p], b[p], cost[p], log=True)
        assert solution.cost[p] == pytest.approx(log["cost"], abs=1e-12)
        np.testing.assert_allclose(solution.alpha[p], log["u"], atol=1e-10)


def test_solver_rejects_bad_input():
    cost, a, b = random_problems(2, 3, 3)
    with pytest.raises(ValueError, match="non-negative"):
        emd_batch(cost, -a, b)
    with pytest.raises(ValueError, match="do not match"):
        emd_batch(cost, a[:, :2], b)


# --- A2-1 .. A2-4 ----------------------------------------------------------------------------


def test_a2_1_emd_equals_assignment():
    """A2-1: uniform weights 1/n on equal-size sets: EMD = (1/n) * assignment cost; in 1-D with
    c = |x - y| it is the sorted matching (1/n) sum |x_(i) - y_(i)|."""
    rng = np.random.default_rng(3)
    n = 9
    uniform = np.full((1, n), 1.0 / n)
    for _ in range(5):
        cost = rng.random((n, n))
        rows, cols = linear_sum_assignment(cost)
        value = emd_batch(cost[None], uniform, uniform).cost[0]
        assert value == pytest.approx(cost[rows, cols].sum() / n, abs=1e-12)
    x, y = rng.normal(size=n), rng.normal(size=n)
    value = emd_batch(np.abs(x[:, None] - y[None])[None], uniform, uniform).cost[0]
    assert value == pytest.approx(np.abs(np.sort(x) - np.sort(y)).mean(), abs=1e-12)
    # the torch entry point gives the same value
    cost = torch.from_numpy(np.abs(x[:, None] - y[None]))
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    assert emd(cost, weights, weights).item() == pytest.approx(value, abs=1e-12)


def test_a2_2_order_free_and_self_distance_zero():
    """A2-2: permuting the query candidates with their weights leaves the EMD unchanged, and
    EMD(Z, Z) = 0 with u = v. (OTAM, OT-4, is order-sensitive; the EMD is not.)"""
    cost, a, b = random_problems(4, 18, 18, seed=4)
    perm = np.random.default_rng(5).permutation(18)
    np.testing.assert_allclose(
        emd_batch(cost[:, perm], a[:, perm], b).cost, emd_batch(cost, a, b).cost, atol=1e-12
    )
    z = torch.nn.functional.normalize(torch.randn(18, 32, dtype=torch.float64), dim=-1)
    u = torch.softmax(torch.randn(18, dtype=torch.float64), -1)
    assert emd(1.0 - z @ z.T, u, u).item() == pytest.approx(0.0, abs=1e-12)


def test_a2_2_model_order_free_and_self_match():
    """A2-2 through the model: permuting the query's candidates (rows of its encoding) leaves
    the logits unchanged; a query identical to a 1-shot support video scores tau_s exactly."""
    model = a2m2()
    torch.manual_seed(6)
    with torch.no_grad():
        support = model.encode(torch.randn(5, 8, 64, 3, 3))
        query = model.encode(torch.randn(3, 8, 64, 3, 3))
        labels = torch.tensor([[2, 0, 4, 1, 3]])
        batch = {k: v[None] for k, v in query.items()}
        shots = {k: v[None] for k, v in support.items()}
        logits = model.compare(shots, labels, batch)  # [1, 3, 5]
        perm = torch.randperm(18)
        permuted = {k: v[:, :, perm] for k, v in batch.items()}
        assert torch.allclose(model.compare(shots, labels, permuted), logits, atol=1e-5)
        itself = {k: v[None, 1:2] for k, v in support.items()}  # support video 1, class 0
        own = model.compare(shots, labels, itself)[0, 0]
    assert own[0].item() == pytest.approx(12.5, abs=1e-5)
    assert (own[1:] < 12.5 - 1e-3).all()


def test_a2_2_euclidean_self_match_is_off_by_the_documented_epsilon():
    """The Euclidean cost is sqrt(2 - 2 cos + 1e-8): a descriptor's cost with itself is 1e-4 in
    exact arithmetic and more in float32, where the square root magnifies the rounding of cos
    (about 1e-7) too, so a query identical to a 1-shot support video scores 12.5 * (1 - d)
    with d between 1e-4 and 1e-3 (2.6e-4 here), not 12.5 as with the cosine cost."""
    model = a2m2(cost="euclidean")
    torch.manual_seed(6)
    with torch.no_grad():
        support = model.encode(torch.randn(5, 8, 64, 3, 3))
        shots = {k: v[None] for k, v in support.items()}
        itself = {k: v[None, 1:2] for k, v in support.items()}  # support video 1, class 0
        own = model.compare(shots, torch.tensor([[2, 0, 4, 1, 3]]), itself)[0, 0]
    self_distance = 1.0 - own[0].item() / 12.5
    assert 1e-4 - 1e-6 <= self_distance < 1e-3
    assert (own[1:] < own[0] - 1e-3).all()


def test_a2_3_constant_features_give_no_nan():
    """A2-3: constant features give a zero moment; trace epsilon keeps it finite, gradients
    too."""
    for moment in ("centred", "raw"):
        model = a2m2(moment=moment)
        model.train()
        features = torch.ones(10, 8, 64, 3, 3, requires_grad=True)
        logits = model.head(features[:5], torch.arange(5), features[5:])
        assert torch.isfinite(logits).all()
        logits.sum().backward()
        assert torch.isfinite(features.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    zero = isqrt_newton_schulz(torch.zeros(2, 4, 4), 5, 1e-5)
    assert torch.equal(zero, torch.zeros(2, 4, 4))


def test_a2_3_isqrt_matches_eig_sqrt():
    """A2-3: for an SPD matrix, iSQRT with N = 10 matches the eig square root to 1e-6
    relative; at N = 3 and 5 it is a coarse normalisation, not a square root."""
    torch.manual_seed(7)
    x = torch.randn(16, 64, dtype=torch.float64)
    sigma = x @ x.T / 64 + 0.1 * torch.eye(16, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(sigma)
    root = vectors @ torch.diag(values.sqrt()) @ vectors.T
    error = {
        n: ((isqrt_newton_schulz(sigma, n, 0.0) - root).norm() / root.norm()).item()
        for n in (3, 5, 10)
    }
    assert error[10] < 1e-6
    assert error[3] > error[5] > 1e-3


def test_a2_3_descriptor_and_candidate_counts():
    """A2-3: the triu length is d(d+1)/2; the candidate count is sum over scales of
    floor((T - tau) / stride) + 1: 18 by default at T = 8, 11 for the pyramid."""
    assert count_candidates(8, (1, 2, 4), (1, 1, 2)) == 18
    assert count_candidates(8, (1, 4, 8), (1, 4, 8)) == 11
    assert count_candidates(4, (1, 2, 4), (1, 1, 2)) == 4 + 3 + 1
    assert count_candidates(2, (1, 2, 4), (1, 1, 2)) == 2 + 1  # tau = 4 does not fit
    features = torch.randn(2, 8, 64, 3, 3)
    for kw, candidates in (
        (dict(), 18),
        (dict(scales_mode="pyramid"), 11),
        (dict(scales_mode="custom", window_lengths=(3,), window_strides=(2,)), 3),
        (dict(spatial_regions="full+quadrants"), 90),
    ):
        model = a2m2(**kw)
        with torch.no_grad():
            encoded = model.encode(features)
        assert encoded["descriptors"].shape == (2, candidates, 8 * 9 // 2), kw
        assert torch.allclose(encoded["descriptors"].norm(dim=-1), torch.ones(2, candidates))
        assert torch.allclose(encoded["weights"].sum(-1), torch.ones(2))


def test_a2_4_dual_gradient_along_zero_sum_direction():
    """A2-4: the finite difference of the EMD along a zero-sum perturbation of u equals
    <alpha, delta> to 1e-6 (float64)."""
    cost, a, b = random_problems(3, 18, 18, seed=8)
    delta = np.random.default_rng(9).normal(size=(3, 18))
    delta -= delta.mean(1, keepdims=True)
    alpha = emd_batch(cost, a, b).alpha
    step = 1e-7
    difference = (
        emd_batch(cost, a + step * delta, b).cost - emd_batch(cost, a - step * delta, b).cost
    ) / (2 * step)
    np.testing.assert_allclose(difference, (alpha * delta).sum(1), atol=1e-6)
    # the autograd function returns the same directional derivative
    u = torch.from_numpy(a).requires_grad_()
    emd(torch.from_numpy(cost), u, torch.from_numpy(b)).sum().backward()
    np.testing.assert_allclose((u.grad.numpy() * delta).sum(1), difference, atol=1e-6)
    np.testing.assert_allclose(u.grad.sum(1).numpy(), 0.0, atol=1e-12)  # centred


def test_exact_emd_gradcheck():
    """The envelope-theorem gradients of the custom Function against finite differences, with
    the weights on the simplex (softmax), as in the model."""
    torch.manual_seed(10)
    cost = torch.rand(3, 5, 7, dtype=torch.float64, requires_grad=True)
    theta = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    phi = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)

    def value(c, t, p):
        return emd(c, torch.softmax(t, -1), torch.softmax(p, -1))

    assert torch.autograd.gradcheck(value, (cost, theta, phi), eps=1e-7, atol=1e-6)


def test_exact_emd_cost_gradient_is_the_plan():
    cost, a, b = random_problems(2, 4, 6, seed=11)
    c = torch.from_numpy(cost).requires_grad_()
    emd(c, torch.from_numpy(a), torch.from_numpy(b)).sum().backward()
    np.testing.assert_allclose(c.grad.numpy(), emd_batch(cost, a, b).plan, atol=1e-12)


def test_sinkhorn_approaches_the_exact_emd():
    cost, a, b = (torch.from_numpy(x) for x in random_problems(6, 18, 18, seed=12))
    exact = emd(cost, a, b)
    coarse = sinkhorn(cost, a, b, epsilon=0.05, iterations=100)[0]
    fine = sinkhorn(cost, a, b, epsilon=0.002, iterations=5000)[0]
    assert (fine - exact).abs().max() < 2e-4 < (coarse - exact).abs().max() < 0.05
    assert (coarse >= exact - 1e-12).all()  # the entropic plan is feasible, so never cheaper


# --- the model -------------------------------------------------------------------------------


def manual_logits(model, support, labels, query):
    """One episode by hand: per (query, class) the union of the class's candidates, weights
    divided by K, one POT call each."""
    s, q = model.encode(support), model.encode(query)
    n_way = int(labels.max()) + 1
    logits = torch.empty(len(query), n_way, dtype=torch.float64)
    for i in range(len(query)):
        for c in range(n_way):
            shots = (labels == c).nonzero().flatten()
            nodes = s["descriptors"][shots].flatten(0, 1)  # [K*m, D]
            v = s["weights"][shots].flatten() / len(shots)
            cost = (1 - q["descriptors"][i] @ nodes.T).double().numpy()
            u = q["weights"][i].double().numpy()
            logits[i, c] = 12.5 * (1 - ot.emd2(u, v.double().numpy() / v.sum().item(), cost))
    return logits


def test_union_kshot_matches_a_per_pair_computation():
    model = a2m2()
    torch.manual_seed(13)
    support, query = torch.randn(15, 8, 64, 3, 3), torch.randn(4, 8, 64, 3, 3)
    labels = torch.tensor([2, 0, 1, 1, 2, 0, 0, 1, 2, 4, 3, 4, 3, 4, 3])
    with torch.no_grad():
        logits = model.head(support, labels, query)
        expected = manual_logits(model, support, labels, query)
    assert torch.allclose(logits.double(), expected, atol=1e-5)


def test_mean_kshot_equals_union_at_one_shot_and_differs_at_five():
    union, mean = a2m2(), a2m2(kshot="mean")
    torch.manual_seed(14)
    query = torch.randn(5, 8, 64, 3, 3)
    with torch.no_grad():
        one = torch.randn(5, 8, 64, 3, 3)
        labels = torch.tensor([3, 1, 0, 4, 2])
        assert torch.allclose(union.head(one, labels, query), mean.head(one, labels, query))
        five, labels = torch.randn(25, 8, 64, 3, 3), torch.arange(5).repeat(5)
        assert not torch.allclose(
            union.head(five, labels, query), mean.head(five, labels, query), atol=1e-3
        )
    with pytest.raises(ValueError, match="same number of shots"):
        union.head(five[:4], torch.tensor([0, 0, 0, 1]), query)


def test_cross_ref_weights_follow_deepemd():
    model = a2m2(weights="cross_ref")
    torch.manual_seed(15)
    with torch.no_grad():
        support = {k: v[None] for k, v in model.encode(torch.randn(2, 8, 64, 3, 3)).items()}
        query = {k: v[None] for k, v in model.encode(torch.randn(1, 8, 64, 3, 3)).items()}
        assert "weights" not in query  # no scorer
        _, u, v = model.episode_problems(support, torch.tensor([[1, 0]]), query)
    q, s = query["descriptors"][0, 0], support["descriptors"][0, 1]  # class 0 is video 1
    expected_u = (q @ s.mean(0)).relu() + 1e-3
    expected_v = (s @ q.mean(0)).relu() + 1e-3
    assert torch.allclose(u[0, 0, 0], expected_u / expected_u.sum(), atol=1e-6)
    assert torch.allclose(v[0, 0, 0], expected_v / expected_v.sum(), atol=1e-6)


@pytest.mark.parametrize(
    "kw",
    [
        dict(weights="mixed"),
        dict(solver="sinkhorn"),
        dict(cost="euclidean"),
        dict(projection_dim=12),
        dict(reduce_dim=None),
        dict(learn_temperature=True),
    ],
)
def test_variants_train(kw):
    model = a2m2(**kw)
    model.train()
    torch.manual_seed(16)
    support, query = torch.randn(10, 4, 64, 3, 3), torch.randn(10, 4, 64, 3, 3)
    labels = torch.arange(5).repeat(2)
    loss = model(support, labels, query, labels, mode="loss", features=True)["loss_cls"]
    loss.backward()
    assert torch.isfinite(loss)
    head = [p for name, p in model.named_parameters() if not name.startswith("backbone")]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head)


def test_scorer_gradient_through_the_exact_emd_matches_finite_differences():
    """The self-guided scorer learns only through the dual gradient: check it end to end."""
    model = a2m2().double()
    torch.manual_seed(17)
    support = torch.randn(5, 4, 64, 3, 3, dtype=torch.float64)
    query = torch.randn(5, 4, 64, 3, 3, dtype=torch.float64)
    labels = torch.tensor([4, 2, 0, 1, 3])
    weight = model.scorer[2].weight  # [1, hidden]
    model.head(support, labels, query).sum().backward()
    step, index = 1e-6, (0, 3)
    with torch.no_grad():
        weight[index] += step
        up = model.head(support, labels, query).sum()
        weight[index] -= 2 * step
        down = model.head(support, labels, query).sum()
        weight[index] += step
    assert weight.grad[index].item() == pytest.approx(((up - down) / (2 * step)).item(), abs=1e-6)
    assert weight.grad.abs().sum() > 0


def first_bn(model):
    return next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_freeze_bn_only_in_episodic_training():
    clips = torch.randint(0, 255, (10, 2, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(5)
    for freeze in (True, False):
        model = a2m2(freeze_bn=freeze)
        model.train()
        bn = first_bn(model)
        before = bn.running_mean.clone()
        model(clips[:5], labels, clips[5:], labels, mode="loss")
        assert torch.equal(bn.running_mean, before) == freeze
        assert model.reduce[1].training  # the M² block's BN is never frozen
    model = a2m2(freeze_bn=True)
    model.train()
    before = first_bn(model).running_mean.clone()
    model.embed(clips)  # the pretraining stage's path: BN trains
    assert not torch.equal(first_bn(model).running_mean, before)


def test_unknown_options_are_named():
    for kw in (
        dict(weights="uniform"),
        dict(solver="qpth"),
        dict(kshot="max"),
        dict(moment="third"),
        dict(scales_mode="dense"),
        dict(cost="bilinear"),
    ):
        with pytest.raises(ValueError, match="unknown A²M²-Net"):
            a2m2(**kw)


def test_solver_threads_follow_torch_threads(monkeypatch):
    # a suite's worker processes each run --threads threads: the EMD pool must not add more
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert default_threads() == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    assert default_threads() == min(16, len(os.sched_getaffinity(0)))
