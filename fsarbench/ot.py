"""Exact earth mover's distance (balanced optimal transport) for many small problems, with
gradients, plus a batched log-domain Sinkhorn for comparison.

A²M²-Net's alignment solves one small transport problem per (query, class)
pair: 250,000 problems of 18 x 18 (or 18 x 90) in a 10,000-episode meta-test. This module
solves them exactly and fast enough not to dominate the test:

- :func:`emd_batch` runs POT's network simplex (``ot.lp.emd_wrap.emd_c``, the C++ solver behind
  ``ot.emd``) over a batch, skipping ``ot.emd``'s per-call Python checks, which cost more than
  the solve itself on problems this small (``ot.emd`` about 19k problems/s, the bare solver
  about 50k/s at 18 x 18 on one core). The solver releases the GIL, so a thread pool over
  chunks of the batch scales with cores; by default it has torch's thread count
  (``--threads``), the process's CPU budget. The plan is exact; the dual potentials are centred the
  way ``ot.emd(..., log=True)`` centres them, so the two agree (``tests/test_a2m2.py``).
  ``ot.batch.solve_batch(reg=None)`` is not used: its values are wrong in POT 0.9.7.post1
  (PythonOT/POT#842).
- :func:`emd` wraps it as a torch autograd function. The forward solves the LPs in float64 on
  the CPU; the backward uses the envelope theorem: d EMD / d cost = the optimal plan, and
  d EMD / d a = alpha - mean(alpha), d EMD / d b = beta - mean(beta) with (alpha, beta) the
  optimal dual potentials. The weights of a balanced problem live on the simplex, so only
  zero-sum perturbations are meaningful, and the centring makes the gradient the one along
  them. Where the LP is degenerate (the optimal dual is not unique) this is a subgradient.
- :func:`sinkhorn` is the entropic approximation, batched in torch in the log domain and
  differentiated by unrolling; it is not exact.
"""

from __future__ import annotations

import itertools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

# POT's network simplex: the C++ solver ``ot.emd`` calls, without the per-call checks.
from ot.lp.emd_wrap import emd_c

# Below this many problems per thread a pool costs more than it saves.
MIN_PROBLEMS_PER_THREAD = 64
MAX_ITER = 100_000
_OPTIMAL, _MAX_ITER_REACHED = 1, 3


@dataclass
class EMDSolution:
    """Solutions of a batch of ``P`` transport problems of one size ``n x m`` (float64)."""

    cost: np.ndarray  # [P] optimal transport cost <plan, cost matrix>
    plan: np.ndarray | None  # [P, n, m] optimal plan, rows sum to a, columns to b
    alpha: np.ndarray | None  # [P, n] row dual potentials (centred as ot.emd centres them)
    beta: np.ndarray | None  # [P, m] column dual potentials


def default_threads() -> int:
    """torch's intra-op thread count (``--threads``; at most the cores this process may use,
    and 16): the CPU budget of this process, so that a suite of several worker processes
    does not run more solver threads than there are cores (each solves its own problems, so
    the values do not depend on the count)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), cores, 16))


@lru_cache(maxsize=4)
def _executor(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="fsarbench-emd")


def _solve_range(cost, a, b, out: EMDSolution, codes, start: int, stop: int, max_iter: int):
    keep_plan, keep_duals = out.plan is not None, out.alpha is not None
    for p in range(start, stop):
        plan, out.cost[p], alpha, beta, codes[p] = emd_c(
            a[p], b[p], cost[p], max_iter, 1, None, None
        )
        if keep_plan:
            out.plan[p] = plan
        if keep_duals:
            out.alpha[p], out.beta[p] = alpha, beta


def emd_batch(
    cost: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    threads: int | None = None,
    max_iter: int = MAX_ITER,
    plans: bool = True,
    duals: bool = True,
) -> EMDSolution:
    """Exact EMD of ``P`` problems: ``cost [P, n, m]``, weights ``a [P, n]``, ``b [P, m]``
    (non-negative; ``b`` is rescaled to ``a``'s mass, as ``ot.emd`` does).

    ``threads``: worker threads (None: :func:`default_threads`); small batches run serially.
    ``plans`` / ``duals``: keep the plans / dual potentials (None in the result otherwise).
    Raises if a problem is infeasible or unbounded; warns if one stops at ``max_iter``.
    """
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    problems, n, m = cost.shape
    if a.shape != (problems, n) or b.shape != (problems, m):
        raise ValueError(f"weights {a.shape}, {b.shape} do not match costs {cost.shape}")
    if (a < 0).any() or (b < 0).any():
        raise ValueError("transport weights must be non-negative")
    b = np.ascontiguousarray(b * (a.sum(1) / b.sum(1))[:, None])
    out = EMDSolution(
        np.empty(problems),
        np.empty((problems, n, m)) if plans else None,
        np.empty((problems, n)) if duals else None,
        np.empty((problems, m)) if duals else None,
    )
    codes = np.empty(problems, dtype=np.int64)
    threads = default_threads() if threads is None else max(1, int(threads))
    threads = min(threads, max(1, problems // MIN_PROBLEMS_PER_THREAD))
    if threads == 1:
        _solve_range(cost, a, b, out, codes, 0, problems, max_iter)
    else:
        bounds = np.linspace(0, problems, threads + 1).astype(int)
        futures = [
            _executor(threads).submit(
                _solve_range, cost, a, b, out, codes, int(start), int(stop), max_iter
            )
            for start, stop in itertools.pairwise(bounds)
        ]
        for future in futures:
            future.result()
    if (codes == _MAX_ITER_REACHED).any():
        warnings.warn(
            f"{int((codes == _MAX_ITER_REACHED).sum())} EMD problems stopped at max_iter "
            f"{max_iter}: their plans are not optimal",
            stacklevel=2,
        )
    bad = (codes != _OPTIMAL) & (codes != _MAX_ITER_REACHED)
    if bad.any():
        raise RuntimeError(f"{int(bad.sum())} EMD problems are infeasible or unbounded")
    if duals:
        out.alpha, out.beta = _dual_like_pot(out.alpha, out.beta, a, b, cost)
    return out


def _dual_like_pot(alpha, beta, a, b, cost):
    """The dual potentials as ``ot.emd(..., log=True)`` returns them: centred so that
    ``alpha . a == beta . b`` and, for zero-weight nodes (which the solver drops), lowered
    until no dual constraint is violated (``ot.lp.estimate_dual_null_weights``)."""
    alpha, beta = _center(alpha, beta, a, b)
    null_a, null_b = a == 0, b == 0
    if null_a.any() or null_b.any():
        violation = alpha[:, :, None] + beta[:, None, :] - cost  # [P, n, m]
        alpha = alpha - null_a * np.maximum(violation.max(2), 0)
        beta = beta - null_b * np.maximum(violation.max(1), 0)
        alpha, beta = _center(alpha, beta, a, b)
    return alpha, beta


def _center(alpha, beta, a, b):
    shift = ((b * beta).sum(1) - (a * alpha).sum(1)) / (a.sum(1) + b.sum(1))  # [P]
    return alpha + shift[:, None], beta - shift[:, None]


class ExactEMD(torch.autograd.Function):
    """EMD values ``[P]`` of costs ``[P, n, m]`` and weights ``[P, n]``, ``[P, m]``, solved
    exactly; gradients by the envelope theorem (see the module docstring)."""

    @staticmethod
    def forward(ctx, cost, a, b, threads):
        solution = emd_batch(
            cost.detach().double().cpu().numpy(),
            a.detach().double().cpu().numpy(),
            b.detach().double().cpu().numpy(),
            threads,
        )
        like = dict(dtype=cost.dtype, device=cost.device)
        alpha = torch.from_numpy(solution.alpha).to(**like)  # [P, n]
        beta = torch.from_numpy(solution.beta).to(**like)  # [P, m]
        ctx.save_for_backward(
            torch.from_numpy(solution.plan).to(**like),  # [P, n, m]
            alpha - alpha.mean(1, keepdim=True),
            beta - beta.mean(1, keepdim=True),
        )
        return torch.from_numpy(solution.cost).to(**like)

    @staticmethod
    def backward(ctx, grad):
        plan, alpha, beta = ctx.saved_tensors  # grad [P]
        return (
            grad[:, None, None] * plan if ctx.needs_input_grad[0] else None,
            grad[:, None] * alpha if ctx.needs_input_grad[1] else None,
            grad[:, None] * beta if ctx.needs_input_grad[2] else None,
            None,
        )


def emd(
    cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor, threads: int | None = None
) -> torch.Tensor:
    """Exact EMD over any leading batch shape: ``cost [..., n, m]``, ``a [..., n]``,
    ``b [..., m]`` -> values ``[...]``, solved in float64 on the CPU. Differentiable in
    ``cost``, ``a`` and ``b``; without a gradient to compute (inference) the plans and duals
    are not kept."""
    batch, (n, m) = cost.shape[:-2], cost.shape[-2:]
    cost, a, b = cost.reshape(-1, n, m), a.reshape(-1, n), b.reshape(-1, m)  # [P, n, m], ...
    if torch.is_grad_enabled() and (cost.requires_grad or a.requires_grad or b.requires_grad):
        return ExactEMD.apply(cost, a, b, threads).reshape(batch)
    solution = emd_batch(
        cost.double().cpu().numpy(),
        a.double().cpu().numpy(),
        b.double().cpu().numpy(),
        threads,
        plans=False,
        duals=False,
    )
    return torch.from_numpy(solution.cost).to(dtype=cost.dtype, device=cost.device).reshape(batch)


def sinkhorn(
    cost: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    epsilon: float = 0.05,
    iterations: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropic OT in the log domain, batched: ``cost [..., n, m]``, ``a [..., n]``,
    ``b [..., m]`` (positive, equal mass) -> (transport cost ``<plan, cost>`` ``[...]``,
    plan ``[..., n, m]``). Differentiable by unrolling the iterations; an approximation of
    :func:`emd` that tends to it as ``epsilon`` -> 0 and ``iterations`` -> infinity."""
    log_a, log_b = a.clamp_min(1e-30).log(), b.clamp_min(1e-30).log()
    kernel = -cost / epsilon  # [..., n, m]
    f = torch.zeros_like(a)  # [..., n] scaled potentials f / epsilon
    g = torch.zeros_like(b)  # [..., m]
    for _ in range(iterations):
        f = log_a - torch.logsumexp(kernel + g[..., None, :], dim=-1)
        g = log_b - torch.logsumexp(kernel + f[..., :, None], dim=-2)
    plan = (kernel + f[..., :, None] + g[..., None, :]).exp()  # [..., n, m]
    return (plan * cost).sum(dim=(-2, -1)), plan
