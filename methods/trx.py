"""TRX: Perrett, Masullo, Burghardt, Mirmehdi & Damen, "Temporal-Relational CrossTransformers
for Few-Shot Action Recognition", CVPR 2021 (reference code
tobyperrett/trx ``model.py``).

For every cardinality omega in ``temporal_set`` (default (2, 3)):

1. Positional encoding: x_t <- Dropout(x_t + pe_scale * PE(t)), the sinusoidal transformer
   encoding with d_model = C, scaled by 0.1, dropout 0.1. As in the reference code, each
   cardinality has its own encoding module, so in training each draws its own dropout mask.
2. Tuples: every strictly increasing omega-tuple of frames, in lexicographic order (28 pairs and
   56 triples at T = 8); a tuple's vector is the concatenation of its omega encoded frames.
3. Keys LN(Upsilon(tuple)) and values Lambda(tuple): linear maps with bias to
   ``trans_linear_out_dim`` (d_k = d_v = 1152), a LayerNorm on the keys only, shared by support
   and query.
4. For each query tuple p and class c, a softmax over all K * |Pi| support tuples of the class
   jointly, of <key_p, key_(k,m)> / sqrt(d_k).
5. The query-specific prototype t_p^c is the attention-weighted sum of the class's values.
6. T^omega(Q, c) = mean_p ||value_p - t_p^c||^2.
7. Cardinalities combine by ``combine``: ``sum`` (T = sum_omega T^omega, the paper as far as
   we know it, and the harness default), ``mean`` (logit = -mean_omega T^omega, the official
   trx code since its commit ef0d9b0 of 2021-02-14, and Perrett's few-shot-action-recognition
   library) or ``l2`` (logit = -||(T^omega)_omega||_2, the official code's first release,
   db3f17b of 2021-01-15).

Logits are -T(Q, c). ``encode`` does steps 1-3 once per video and returns ``keys_<omega>`` and
``values_<omega>`` ``[B, |Pi|, d]``; ``compare`` does steps 4-7 for a batch of episodes at once.

Deviations and choices:

- Combination of cardinalities: ``sum`` by default (see step 7); the official code's mean
  is ``combine="mean"``, its first release's L2 norm ``combine="l2"`` (config ``trx_l2``).
- The positional encoding is computed for the clip's own T frames. The reference code builds a
  table of max_len = floor(1.5 * seq_len) rows and takes its first T; the rows are the same, the
  table only bounds T.
- The reference code also builds a LayerNorm for the values that it never applies; we omit it.
- Cardinalities larger than the clip's T have no tuples and are skipped (the reference code
  would fail); the tiny test clips of the harness have T = 2.
- Support in any order and classes with unequal shot counts: ``compare`` groups the support by
  label into ``[N, K_max]`` slots and masks empty slots out of the softmax; with K shots per
  class this is exactly the reference code's per-class loop.
- ``compare`` processes episodes in chunks so its intermediates stay under about
  ``compare_memory_mib``; the result does not depend on the chunking. Without gradients (the
  test and validation) the scores of all support tuples are one product per episode in
  support order, grouped by class afterwards: the same dot products as the training path's
  per-class products (logits bit-identical on the development machine), 1.5x / 1.3x faster at
  1 / 5 shots at paper size (``tools/speed_heads.py``).
- Synth runs use ``trans_linear_out_dim=32`` (``configs/trx/trx.py``, ``method_overrides``) so
  that 10,000 5-shot test episodes take seconds on two CPU cores; real benchmarks use 1152.
- Training recipe (SGD lr 1e-3 without momentum, 16 tasks per batch, about 100k iterations) is
  the schedule ``trx_sgd``, not part of this module. The trx code tests at a fixed iteration
  (75,000 for SSv2); the harness tests the checkpoint with the best val accuracy.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from fsarbench.methods.base import FewShotRecognizer, n_way_of
from fsarbench.registry import MODELS

COMBINES = ("sum", "l2", "mean")


def sinusoidal_encoding(frames: int, channels: int, scale: float = 0.1) -> torch.Tensor:
    """The sinusoidal transformer encoding ``[frames, channels]`` in float64, times ``scale``:
    PE(t, 2i) = sin(t / 10000^(2i / C)), PE(t, 2i + 1) = cos(t / 10000^(2i / C))."""
    position = torch.arange(frames, dtype=torch.float64)[:, None]  # [T, 1]
    rates = torch.exp(
        torch.arange(0, channels, 2, dtype=torch.float64) * (-math.log(10000.0) / channels)
    )  # [ceil(C / 2)]
    encoding = torch.zeros(frames, channels, dtype=torch.float64)
    encoding[:, 0::2] = torch.sin(position * rates)
    encoding[:, 1::2] = torch.cos(position * rates[: channels // 2])
    return encoding * scale


def frame_tuples(frames: int, omega: int) -> torch.Tensor:
    """Every strictly increasing ``omega``-tuple of ``range(frames)``, lexicographic:
    ``[|Pi|, omega]`` (empty when omega > frames)."""
    return torch.tensor(list(combinations(range(frames), omega)), dtype=torch.long).view(-1, omega)


def group_by_class(labels: torch.Tensor, n_way: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slots that group a support set by class, for any order and shot counts.

    labels ``[E, S]`` -> ``source [E, N * K_max]``: the support row that fills each slot (class
    n owns slots n * K_max ... n * K_max + K_max - 1; ``S`` marks an empty slot), and ``valid
    [E, N * K_max]``."""
    episodes, shots = labels.shape
    one_hot = F.one_hot(labels, n_way)  # [E, S, N]
    k_max = int(one_hot.sum(dim=1).max())
    rank = (one_hot.cumsum(dim=1) * one_hot).sum(dim=-1) - 1  # [E, S] rank within the class
    slot = labels * k_max + rank  # [E, S]
    rows = torch.arange(shots, device=labels.device).expand(episodes, shots)  # [E, S]
    source = torch.full((episodes, n_way * k_max), shots, device=labels.device)
    source = source.scatter(1, slot, rows)  # [E, N * K_max]
    return source, source < shots


@MODELS.register_module(name="trx")
class TRX(FewShotRecognizer):
    feature_kind = "pooled"
    paper = (
        "Perrett et al., Temporal-Relational CrossTransformers for Few-Shot Action Recognition, "
        "CVPR 2021"
    )

    def __init__(
        self,
        backbone: dict,
        temporal_set: tuple[int, ...] = (2, 3),
        trans_linear_out_dim: int = 1152,
        dropout: float = 0.1,
        positional_encoding: bool = True,
        pe_scale: float = 0.1,
        combine: str = "sum",
        compare_memory_mib: int = 1024,
        **kwargs,
    ) -> None:
        super().__init__(backbone=backbone, **kwargs)
        if combine not in COMBINES:
            raise ValueError(f"unknown TRX combine {combine!r}: use one of {COMBINES}")
        temporal_set = tuple(int(omega) for omega in temporal_set)
        if not temporal_set or min(temporal_set) < 1 or len(set(temporal_set)) != len(temporal_set):
            raise ValueError(
                f"temporal_set must be distinct cardinalities >= 1, got {temporal_set}"
            )
        self.temporal_set = temporal_set
        self.trans_linear_out_dim = int(trans_linear_out_dim)
        self.positional_encoding = positional_encoding
        self.pe_scale = float(pe_scale)
        self.combine = combine
        self.compare_memory_mib = compare_memory_mib
        channels = self.channels
        # One encoding dropout, key map, key norm and value map per cardinality (ModuleDict keys
        # must be strings).
        self.dropouts = nn.ModuleDict({str(w): nn.Dropout(dropout) for w in temporal_set})
        self.key_maps = nn.ModuleDict(
            {str(w): nn.Linear(w * channels, self.trans_linear_out_dim) for w in temporal_set}
        )
        self.key_norms = nn.ModuleDict(
            {str(w): nn.LayerNorm(self.trans_linear_out_dim) for w in temporal_set}
        )
        self.value_maps = nn.ModuleDict(
            {str(w): nn.Linear(w * channels, self.trans_linear_out_dim) for w in temporal_set}
        )

    # --- per video ------------------------------------------------------------------------

    def tuple_vectors(self, features: torch.Tensor, omega: int) -> torch.Tensor:
        """Steps 1-2: features ``[B, T, C]`` -> tuple vectors ``[B, |Pi_omega|, omega * C]``."""
        batch, frames, channels = features.shape
        if self.positional_encoding:
            encoding = sinusoidal_encoding(frames, channels, self.pe_scale)
            features = features + encoding.to(features)  # [B, T, C]
        features = self.dropouts[str(omega)](features)
        index = frame_tuples(frames, omega).to(features.device)  # [P, omega]
        tuples = features[:, index]  # [B, P, omega, C]
        return tuples.reshape(batch, len(index), omega * channels)  # [B, P, omega * C]

    def encode(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        # features [B, T, C] -> keys_w, values_w [B, |Pi_w|, d] for each usable cardinality w
        frames = features.shape[1]
        usable = [omega for omega in self.temporal_set if omega <= frames]
        if not usable:
            raise ValueError(f"TRX needs T >= {min(self.temporal_set)} frames, got {frames}")
        encoded = {}
        for omega in usable:
            tuples = self.tuple_vectors(features, omega)  # [B, P, omega * C]
            keys = self.key_norms[str(omega)](self.key_maps[str(omega)](tuples))  # [B, P, d]
            encoded[f"keys_{omega}"] = keys
            encoded[f"values_{omega}"] = self.value_maps[str(omega)](tuples)  # [B, P, d]
        return encoded

    # --- per episode ----------------------------------------------------------------------

    def compare_flops(self, n_way: int, shots: int, queries: int, frames: int) -> float:
        # per cardinality and class: scores [Q*P, d] x [d, K*P] and prototypes
        # [Q*P, K*P] x [K*P, d], 2 flops a multiply-add each; the distances are lower order
        dim = self.trans_linear_out_dim
        flops = 0.0
        for omega in self.temporal_set:
            tuples = math.comb(frames, omega)
            flops += n_way * 2 * (2 * queries * tuples * shots * tuples * dim)
        return flops

    def compare(self, support, support_labels, query):
        # support / query: dicts of [E, S, P, d] / [E, Q, P, d]; labels [E, S] -> logits [E, Q, N]
        distances = self.cardinality_distances(support, support_labels, query)  # [E, Q, N, W]
        if self.combine == "sum":
            return -distances.sum(dim=-1)
        if self.combine == "mean":
            return -distances.mean(dim=-1)
        return -torch.linalg.vector_norm(distances, dim=-1)

    def cardinality_distances(
        self, support: dict, support_labels: torch.Tensor, query: dict
    ) -> torch.Tensor:
        """T^omega(Q, c) for every usable cardinality: ``[E, Q, N, W]``, W in the order of
        ``temporal_set``, in chunks of episodes that bound the intermediates' memory."""
        omegas = [omega for omega in self.temporal_set if f"keys_{omega}" in query]
        n_way = n_way_of(support_labels)
        source, valid = group_by_class(support_labels, n_way)  # [E, N * K_max]
        episodes = support_labels.shape[0]
        queries = query[f"keys_{omegas[0]}"].shape[1]
        slots = source.shape[1]
        element = query[f"keys_{omegas[0]}"].element_size()
        per_episode = 0
        for omega in omegas:
            tuples, dim = query[f"keys_{omega}"].shape[2:]
            # copies of the grouped keys and values, 3 score-sized and 3 prototype-sized
            # intermediates
            floats = 4 * slots * tuples * dim + 3 * queries * tuples * (
                slots * tuples + n_way * dim
            )
            per_episode = max(per_episode, floats * element)
        chunk = max(1, (self.compare_memory_mib << 20) // per_episode)
        parts = []
        for start in range(0, episodes, chunk):
            rows = slice(start, start + chunk)
            parts.append(
                torch.stack(
                    [
                        self._distance(
                            support[f"keys_{omega}"][rows],
                            support[f"values_{omega}"][rows],
                            query[f"keys_{omega}"][rows],
                            query[f"values_{omega}"][rows],
                            source[rows],
                            valid[rows],
                            n_way,
                        )
                        for omega in omegas
                    ],
                    dim=-1,
                )
            )  # [e, Q, N, W]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _distance(
        self, support_keys, support_values, query_keys, query_values, source, valid, n_way
    ):
        # support_* [E, S, P, d], query_* [E, Q, P, d], source / valid [E, N * K] -> [E, Q, N]
        episodes, _, tuples, dim = support_keys.shape
        queries = query_keys.shape[1]
        k_max = source.shape[1] // n_way
        full = bool(valid.all())  # every class has K_max shots: no empty slot to fill
        if not full:  # empty slots read an extra zero row S
            padding = support_keys.new_zeros(episodes, 1, tuples, dim)
            support_keys = torch.cat([support_keys, padding], dim=1)  # [E, S + 1, P, d]
            support_values = torch.cat([support_values, padding], dim=1)  # [E, S + 1, P, d]
        index = source[:, :, None, None].expand(-1, -1, tuples, dim)  # [E, N * K, P, d]
        values = support_values.gather(1, index)  # [E, N * K, P, d]
        values = values.view(episodes, n_way, k_max * tuples, dim)  # [E, N, K * P, d]
        # the 1 / sqrt(d_k) scale on the (smaller) query side
        scaled = query_keys.reshape(episodes, 1, queries * tuples, dim) / math.sqrt(dim)
        if full and not torch.is_grad_enabled():
            # test: every support tuple's score in one product per episode, in support order
            # (no copy of the query per class, no gather of the keys), then grouped by class:
            # the same dot products, so the same logits as the training path below
            flat_keys = support_keys.reshape(episodes, -1, dim)  # [E, S * P, d]
            scores = torch.bmm(scaled[:, 0], flat_keys.transpose(1, 2))  # [E, QP, S * P]
            slots = source[:, None, :, None].expand(-1, queries * tuples, -1, tuples)
            scores = scores.view(episodes, queries * tuples, -1, tuples).gather(2, slots)
            scores = scores.view(episodes, queries * tuples, n_way, k_max * tuples)
            scores = scores.transpose(1, 2)  # [E, N, QP, KP]
        else:
            keys = support_keys.gather(1, index)  # [E, N * K, P, d]
            keys = keys.view(episodes, n_way, k_max * tuples, dim)  # [E, N, K * P, d]
            scores = scaled @ keys.transpose(-1, -2)  # [E, N, QP, KP]
        if not full:
            empty = ~valid.view(episodes, n_way, 1, k_max, 1)  # [E, N, 1, K, 1]
            scores = scores.view(episodes, n_way, queries * tuples, k_max, tuples)
            scores = scores.masked_fill(empty, float("-inf"))
            scores = scores.view(episodes, n_way, queries * tuples, k_max * tuples)
        attention = scores.softmax(dim=-1)  # [E, N, QP, KP]: over the class's tuples jointly
        prototypes = attention @ values  # [E, N, QP, d]
        prototypes = prototypes.view(episodes, n_way, queries, tuples, dim)  # [E, N, Q, P, d]
        # the difference in place of the prototypes: a third of the memory traffic of
        # (v - t).pow(2).sum(-1)
        difference = prototypes.sub_(query_values[:, None])  # [E, N, Q, P, d]
        distance = torch.linalg.vector_norm(difference, dim=-1).square().mean(dim=-1)  # [E, N, Q]
        return distance.transpose(1, 2)  # [E, Q, N]
