"""OTAM: Cao, Ji, Cao, Chang & Niebles, "Few-Shot Video Classification via Temporal Alignment",
CVPR 2020.

A query and a support video are compared by the cost of their best monotone frame alignment:
frame costs D[l, m] = 1 - cos(f_l, g_m), a zero column padded before and after the
columns so that the alignment may start and end anywhere in the row sequence, and a cumulative
cost whose min is a soft-min (-lbda * logsumexp(-x / lbda)), so that the distance is
differentiable in the frame features. Logits are -distance; the method has no trainable
parameters of its own: a frozen backbone leaves nothing to train, and in ``finetune`` the
backbone learns through the alignment.

What is implemented (the canonical form): :func:`otam_distance`, the recursion over the
padded matrix with diagonal and horizontal moves in the real columns and the free end (the
vertical move in the last padded column), vectorised over every (query, support) pair of every
episode; only the (row, column) cells are a Python loop. ``lbda = 0`` is an exact hard min.
:func:`otam_directions` combines the two directions; CLIP-FSAR's head reuses both.

Options (constructor arguments, harness defaults; configs/otam/README.md):

- ``lbda = 0.1`` (the two reimplementations' value, the paper's is believed to
  be the same [M]).
- ``first_col_vertical = False``: True adds the vertical move in the first real
  column, as CLIP-FSAR, Perrett's library and the otam-reimpl do (parity with their numbers).
- ``last_col_vertical = True``: False reproduces the 2-term last column of
  Perrett's library up to b9c46a0 (0b5b5b8 among them, with ``avg``) and at 9643d36 (with
  ``sum``), which disables the free end (a known bug, kept as an option for parity); its head
  (3687f3a) has the 3-term column and ``sum`` (configs/otam/README.md, the commit table).
- ``direction = "avg"``: ``q2s`` (rows = query, padded columns = support, the
  orientation of Perrett's library and CLIP-FSAR), ``s2q`` (the transpose), ``avg`` (half the
  sum, Perrett's "otambd"), ``sum`` (CLIP-FSAR), ``timeflip_avg`` (the otam-reimpl's
  "bidirectional" term: q2s on the matrix with both time axes reversed, averaged with q2s).
- ``kshot = "mean_dist"``: a class's distance is the mean of its K per-shot distances
  (Perrett); ``proto_first`` averages the K support frame sequences into one prototype
  sequence first, then aligns (CLIP-FSAR).

Deviations and choices:

- The original paper is believed to align in one direction only [M]; the default ``avg`` is a
  harness decision, see configs/otam/README.md (``direction="q2s"`` is the believed paper
  setting).
- ``timeflip_avg`` averages the two distances before the cross-entropy; the otam-reimpl averages
  two cross-entropy losses instead (and pads the query, not the support).
- The cosine uses ``F.normalize`` per frame, which clamps each norm at 1e-8
  (a.b / (max(|a|, eps) max(|b|, eps))), not a.b / (|a| |b| + eps); the two differ by about
  eps / (|a| |b|), and an all-zero frame gets cost 1 instead of NaN.
- ``proto_first`` averages the raw (unnormalised) frame features, as CLIP-FSAR does, so
  ``encode`` then leaves the features as they are and ``compare`` normalises the prototypes.
- The otam-reimpl's dropout (0.5) and the paper's exact training recipe [M] are not part of the
  head; the training recipe is the run config's (Perrett's, configs/otam/README.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fsarbench.methods.base import FewShotRecognizer, n_way_of, one_hot_mean
from fsarbench.registry import MODELS

DIRECTIONS = ("q2s", "s2q", "avg", "sum", "timeflip_avg")
KSHOTS = ("mean_dist", "proto_first")
EPS = 1e-8


def otam_distance(
    cost: torch.Tensor,
    lbda: float = 0.1,
    first_col_vertical: bool = False,
    last_col_vertical: bool = True,
) -> torch.Tensor:
    """Directional OTAM distance (the canonical recursion): frame costs ``cost [..., L, M]``
    (rows: the sequence that may be entered and left anywhere; columns: the padded sequence,
    every frame of which is matched) -> ``[...]``. ``lbda = 0`` is the hard min.

    Computed as H = -Gamma / lbda (H = -Gamma when lbda = 0), so that each cell is one add and
    one ``logaddexp`` (or ``maximum``) over every leading index at once."""
    if lbda < 0:
        raise ValueError(f"lbda must be >= 0, got {lbda}")
    rows, cols = cost.shape[-2:]
    scale = lbda if lbda > 0 else 1.0
    combine = torch.logaddexp if lbda > 0 else torch.maximum
    grid = torch.movedim(-cost / scale, (-2, -1), (0, 1)).contiguous()  # [L, M, ...]
    zero = grid.new_zeros(grid.shape[2:])  # [...]: the first padded column, Gamma(l, 0) = 0
    # Top row: a single predecessor per cell, so the running sum; Gamma(0, M+1) = Gamma(0, M).
    top = grid[0].cumsum(dim=0)  # [M, ...]
    previous = [zero, *top.unbind(0), top[-1]]  # M + 2 cells of [...]
    for row in range(1, rows):
        current = [zero]
        for col in range(1, cols + 1):
            best = combine(previous[col - 1], current[col - 1])  # diagonal, horizontal
            if col == 1 and first_col_vertical:
                best = combine(best, previous[col])  # the variant's vertical move
            current.append(grid[row, col - 1] + best)
        end = combine(previous[cols], current[cols])  # into the last padded column
        if last_col_vertical:
            end = combine(end, previous[cols + 1])  # the free end: stay in the padded column
        current.append(end)
        previous = current
    return -scale * previous[cols + 1]


def otam_directions(
    cost: torch.Tensor,
    direction: str = "avg",
    lbda: float = 0.1,
    first_col_vertical: bool = False,
    last_col_vertical: bool = True,
) -> torch.Tensor:
    """OTAM distance of query-to-support frame costs ``cost [..., Tq, Ts]`` (rows = query) in
    ``direction`` (one of :data:`DIRECTIONS`) -> ``[...]``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown OTAM direction {direction!r}: use one of {DIRECTIONS}")
    options = dict(
        lbda=lbda, first_col_vertical=first_col_vertical, last_col_vertical=last_col_vertical
    )
    if direction == "q2s":
        return otam_distance(cost, **options)
    if direction == "s2q":
        return otam_distance(cost.transpose(-2, -1), **options)
    other = (
        cost.flip(-2, -1) if direction == "timeflip_avg" else cost.transpose(-2, -1)
    )  # [..., Tq, Ts] or [..., Ts, Tq]
    if other.shape == cost.shape:  # one recursion for both directions
        both = otam_distance(torch.stack([cost, other]), **options)  # [2, ...]
        forward, backward = both.unbind(0)
    else:
        forward, backward = otam_distance(cost, **options), otam_distance(other, **options)
    total = forward + backward
    return total if direction == "sum" else total / 2


@MODELS.register_module(name="otam")
class OTAM(FewShotRecognizer):
    feature_kind = "pooled"
    paper = "Cao et al., Few-Shot Video Classification via Temporal Alignment, CVPR 2020"

    def __init__(
        self,
        backbone: dict,
        lbda: float = 0.1,
        first_col_vertical: bool = False,
        last_col_vertical: bool = True,
        direction: str = "avg",
        kshot: str = "mean_dist",
        **kwargs,
    ) -> None:
        super().__init__(backbone=backbone, **kwargs)
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown OTAM direction {direction!r}: use one of {DIRECTIONS}")
        if kshot not in KSHOTS:
            raise ValueError(f"unknown OTAM kshot {kshot!r}: use one of {KSHOTS}")
        if lbda < 0:
            raise ValueError(f"lbda must be >= 0, got {lbda}")
        self.lbda = float(lbda)
        self.first_col_vertical = first_col_vertical
        self.last_col_vertical = last_col_vertical
        self.direction = direction
        self.kshot = kshot

    def encode(self, features):
        # features [B, T, C] -> unit frames [B, T, C] (proto_first: raw, averaged per class first)
        if self.kshot == "proto_first":
            return features
        return F.normalize(features, dim=-1, eps=EPS)

    def distances(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """Unit frames ``query [E, Q, T, C]``, ``support [E, S, T, C]`` -> OTAM distances
        ``[E, Q, S]``."""
        episodes, queries, frames = query.shape[:3]
        shots, support_frames = support.shape[1:3]
        cosine = query.flatten(1, 2) @ support.flatten(1, 2).transpose(1, 2)  # [E, Q*T, S*T]
        cosine = cosine.view(episodes, queries, frames, shots, support_frames)  # [E, Q, T, S, T]
        cost = 1.0 - cosine.transpose(2, 3)  # [E, Q, S, Tq, Ts]
        return otam_directions(
            cost,
            self.direction,
            lbda=self.lbda,
            first_col_vertical=self.first_col_vertical,
            last_col_vertical=self.last_col_vertical,
        )

    def compare(self, support, support_labels, query):
        # support [E, S, T, C], support_labels [E, S], query [E, Q, T, C] -> logits [E, Q, N]
        n_way = n_way_of(support_labels)
        if self.kshot == "proto_first":
            prototypes = one_hot_mean(support_labels, support, n_way)  # [E, N, T, C]
            prototypes = F.normalize(prototypes, dim=-1, eps=EPS)
            return -self.distances(F.normalize(query, dim=-1, eps=EPS), prototypes)
        distances = self.distances(query, support)  # [E, Q, S]
        per_class = one_hot_mean(support_labels, distances.transpose(1, 2), n_way)  # [E, N, Q]
        return -per_class.transpose(1, 2)
