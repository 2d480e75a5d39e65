"""TA²N: Li, Liu, Li, Xie, Ding & Liu, "TA2N: Two-Stage Action Alignment Network for Few-Shot
Action Recognition", AAAI 2022 (code R00Kie-Liu/TA2N).

Backbone maps ``[B, T, C, H, W]`` (ResNet-50 before its last average pool) are aligned in two
stages and compared frame by frame:

- **TTM** (per video, in ``encode``): Dropout(0.5) on the backbone maps (training
  only, as in the code), then a localisation net (Conv3d C->64, BN, max-pool, ReLU; Conv3d
  64->128, BN, max-pool, ReLU; global max-pool; FC 128->32, ReLU, FC 32->2, tanh; the last FC
  starts at weight 0, bias (2, 0)) predicts theta = (a, b), and :func:`temporal_warp` resamples
  the video at u_i = a t_i + b (t_i = linspace(-1, 1, T)) by linear interpolation between
  frames, with align_corners semantics and zeros outside [-1, 1].
- **TC** (per pair): W_k, W_q, W_v (1x1 Conv1d C->C without bias, here
  ``nn.Linear``, the same map) on the spatially pooled support s and query q;
  M = softmax over query time of (W_k s)^T (W_q q) / sqrt(C). Code form with a residual
  (``tc_residual=True``): f~_q = f^_q + sum_y M[x, y] (W_v q)[:, y] and
  f~_s = f^_s + W_v s, the pooled terms broadcast over (h, w).
- **SC** (per pair): the offset predictor of Table 5 on Cat(f~_s, f~_q) (Conv3d
  2C->128, BN, max-pool (1,2,2), ReLU; Conv3d 128->128, BN, max-pool, ReLU; spatial max;
  Conv1d 128->64, ReLU, Conv1d 64->2 (zero-initialised), tanh; times 0.75) gives an offset o_t
  per frame; the mask of Eq. 11 (:func:`offset_mask`, gamma = (L-1)/2 per axis: 3 on 7x7) is
  averaged over 9 perturbed offsets {0, (+-1, 0), (0, +-1), (+-1, +-1)} * delta, each
  normalised to unit sum; the support is pooled with the mask at o_t and the query at -o_t.
- **Distance** (Eq. 8): d = sum_t (1 - cos(f_s[t], f_q[t])), logits = -d.
- **K-shot** (the paper's supplement): every shot is aligned to a reference shot r of its class
  by an attention with its own weights W'_k, W'_q, W'_v (softmax over the shot's time, W'_v on
  the maps, no residual), the prototype is the mean of the aligned shots, the query is mapped
  by W'_v, and TC + SC run between prototype and query.

How it is computed. Everything per video is in ``encode``: TTM, the TC and shot-alignment
projections of the pooled frames, and the offset predictor's first convolution applied to each
video's maps. ``compare`` does the pair part batched over episodes x queries x classes. The
first Conv3d of the offset predictor (2C = 4096 input channels at paper size: 5.5 GMAC per
pair if run directly, as the code does) is linear in its input, and its input is linear in
per-video quantities (a prototype is a weighted sum of shot frames, the TC terms are weighted
sums of projected frames), so it is evaluated exactly as per-video convolutions
(:func:`frame_taps`, :func:`kernel_taps`, :func:`spread_taps`) contracted with the pair's
attention weights. W'_v is linear and commutes with the spatial pooling, so in K-shot episodes
it is applied to the pooled features and the maps are stored once per video. Prototypes are one
matrix product over the support as it lies (no copy into class order), and a 1-shot episode
scores its shots in support order and permutes the columns. ``compare`` splits its pairs into
chunks of at most ``pair_chunk`` outside training, so its memory stays bounded.
``tests/test_ta2n.py`` checks the whole head against a direct pair-by-pair computation.

Options (constructor arguments, harness defaults):

- ``tc_residual = True``: the code's residual form with maps. ``False`` is the
  paper's Eq. 3 taken literally: f~_q = sum_y M V and f~_s = W_v s are pooled vectors, SC then
  has no spatial information to act on (masked pooling of a constant map returns it), so it is
  skipped.
- ``perturb_at_test = False`` (the paper; the code keeps perturbing at test).
- ``perturb_delta = 0.2`` and ``perturb_decay_every = 8000``: ``decay()`` halves delta (the
  code's method); the model counts its training iterations (calls of ``forward`` in ``loss``
  mode in train mode, one per task in fsarbench) in a buffer and calls ``decay()`` every
  ``perturb_decay_every`` of them. 8000 = the paper's "every 40 epochs" at 200 tasks per epoch.
  The count and delta are buffers, so they are saved with checkpoints and survive a resume.
  ``None`` or 0 never decays (the released code never calls ``decay``).
- ``shot_reference = "random"``: in training the reference shot of each class
  is drawn from torch's global generator (fsarbench seeds it per iteration); in eval the
  prototype is averaged over all K choices of the reference, i.e. the expectation of the
  training-time prototype over the random draw. ``"mean"`` uses that average in training too.
- ``use_ttm``, ``use_tc``, ``use_sc``: the stages of the ablation of Table 3 (with ``use_sc``
  off the frames are average-pooled).
- ``dropout = 0.5``, ``loc_channels = (64, 128)``, ``loc_hidden = 32``,
  ``offset_channels = (128, 64)``, ``offset_scale = 0.75``, ``pair_chunk = 1024``.

Deviations and choices:

- Pooling in both small 3D nets: max-pooling with kernel and stride 2 along a pooled
  dimension of size >= 2 and 1 along a dimension of size 1 (:class:`HalvingMaxPool3d`), so a
  dimension never shrinks below 1. For sizes >= 2 this is exactly the code's ``MaxPool3d(2)``
  (floor mode): 8x7x7 -> 4x3x3 -> 2x1x1 in TTM and 7x7 -> 3x3 -> 1x1 in SC; synth's 4x4 gives
  2x2 -> 1x1; 3x3 maps give 1x1 -> 1x1.
- Reference shot: the paper draws it at random, the code takes shot 0 of each class (and
  assumes the support is sorted by class). Here: random in training, averaged over the K
  choices in eval (see ``shot_reference``), so eval logits do not depend on the support order;
  shots are matched to their class by label, never by position.
- The mask follows the paper's convention, I_o = m_x(o_x) (x) m_y(o_y) with the support at
  +o; the code's ``gen_mask(o)`` equals the paper's m(-o), a sign flip of a learned quantity.
  o_x runs along the width, o_y along the height, gamma = (L-1)/2 per axis (the code assumes
  square maps).
- In training the TTM's BatchNorm sees support and query in separate batches (as in the code,
  which calls the localisation net on each set) and the SC BatchNorms see all pairs of the
  task; in eval both use running statistics.
- The cosine of Eq. 8 clamps each norm at 1e-8 (``F.cosine_similarity``); the code uses
  ``F.normalize`` (1e-12).
- The code's optional LayerNorm over the N distances (``--dist_norm``, off by default) is not
  implemented.
- Training recipe: the paper's optimiser, see configs/ta2n/README.md.
- ``encode`` without a shot count returns the quantities of both the 1-shot and the K-shot
  branch: about 1.29 M floats per video at 2048 x 7 x 7 (62% of it the maps), 88 k on synth.
  The test (``encode_for_test``, once per test video) keeps only its episodes' branch; when
  all test videos' rows exceed the evaluation's budget (SSv2-Full), it keeps theta instead of
  the warped maps, which ``compare`` warps again from the stored features: 0.18 M floats per
  video at 1 shot, 0.31 M at 5, instead of 0.98 M / 1.11 M (``tools/speed_memory.py``).
- Pooling is computed as a reshape and ``amax`` (much faster on CPU for maps this small than
  ``max_pool3d``); at exact ties the gradient is split between the tied elements.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fsarbench.methods.base import FewShotRecognizer, n_way_of, take_rows, unflatten_rows
from fsarbench.registry import MODELS

EPS = 1e-8
SHOT_REFERENCES = ("random", "mean")
# The 9 perturbation directions of the SC mask (supplement; code order).
PERTURBATIONS = ((0, 0), (0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1))
SUPPORT_KEYS = ("value", "key", "support_conv", "support_taps")  # per branch; "maps" shared


# --- stage 1: temporal transform ------------------------------------------------------------


def temporal_warp(features: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample each video in time: ``features [B, T, ...]``, ``theta [B, 2] = (a, b)`` ->
    ``[B, T, ...]``. Output frame i reads position u_i = a t_i + b, t_i = linspace(-1, 1, T),
    with u = -1 at frame 0 and u = 1 at frame T-1 (align_corners), linear interpolation
    between neighbouring frames and zeros outside (``grid_sample``'s zero padding)."""
    frames = features.shape[1]
    grid = torch.linspace(-1.0, 1.0, frames, dtype=theta.dtype, device=theta.device)
    position = (theta[:, :1] * grid + theta[:, 1:] + 1) / 2 * (frames - 1)  # [B, T] in frames
    below = position.floor()
    frac = (position - below)[..., None]  # [B, T, 1]
    source = torch.arange(frames, device=theta.device, dtype=theta.dtype)
    lower = (source == below[..., None]).to(theta.dtype)  # [B, T(out), T(in)]
    upper = (source == below[..., None] + 1).to(theta.dtype)
    weights = (1 - frac) * lower + frac * upper  # [B, T(out), T(in)]
    flat = features.flatten(2)  # [B, T, C*H*W]
    return (weights @ flat).view(features.shape)


class HalvingMaxPool3d(nn.Module):
    """Max-pool ``[B, C, T, H, W]`` by 2 (floor mode: an odd last row is dropped) along time
    (if ``time``) and space, leaving any dimension of size 1 as it is, so small maps never pool
    to an empty tensor. Computed as a reshape and ``amax``, which is much faster on CPU than
    ``max_pool3d`` for maps this small (and equal to it; at exact ties the gradient is split)."""

    def __init__(self, time: bool) -> None:
        super().__init__()
        self.time = time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape, reduce = list(x.shape[:2]), []
        for axis, size in enumerate(x.shape[2:]):
            if (axis > 0 or self.time) and size >= 2:
                x = x.narrow(2 + axis, 0, size - size % 2)
                shape += [size // 2, 2]
                reduce.append(len(shape) - 1)
            else:
                shape.append(size)
        return x.reshape(shape).amax(dim=reduce) if reduce else x


# --- stage 2b: spatial coordination mask ---------------------------------------------------


def offset_mask(offsets: torch.Tensor, length: int) -> torch.Tensor:
    """Eq. 11 along one axis, paper convention: ``offsets [...]`` -> ``[..., length]`` on the
    grid x = linspace(-1, 1, length), gamma = (length - 1) / 2: 1 where |x - o| <= 1, then a
    ramp 1 - gamma (|x - o| - 1) down to 0."""
    grid = torch.linspace(-1.0, 1.0, length, dtype=offsets.dtype, device=offsets.device)
    gamma = (length - 1) / 2
    excess = F.relu((grid - offsets[..., None]).abs() - 1)  # [..., L]
    return F.relu(1 - gamma * excess)


def coordination_masks(
    offsets: torch.Tensor, height: int, width: int, perturbations: torch.Tensor | None = None
) -> torch.Tensor:
    """The SC pooling weights: ``offsets [..., 2] = (o_x, o_y)`` -> ``[..., H, W]``, the mean
    over ``perturbations [P, 2]`` (None: no perturbation) of the mask at offset + p, each
    normalised to unit sum."""
    if perturbations is not None:
        offsets = offsets[..., None, :] + perturbations  # [..., P, 2]
    else:
        offsets = offsets[..., None, :]  # [..., 1, 2]
    rows = offset_mask(offsets[..., 1], height)  # [..., P, H]
    cols = offset_mask(offsets[..., 0], width)  # [..., P, W]
    rows = rows / rows.sum(dim=-1, keepdim=True)
    cols = cols / cols.sum(dim=-1, keepdim=True)
    # each 2-D mask is rows (x) cols, whose sum is the product of the two sums
    return torch.einsum("...ph,...pw->...hw", rows, cols) / offsets.shape[-2]


# --- the offset predictor's first convolution, per video -----------------------------------


def frame_taps(maps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The spatial part of a 3x3x3 convolution, frame by frame: ``maps [B, T, C, H, W]``,
    ``weight [O, C, 3, 3, 3]`` -> ``[B, T, 3, O, H, W]``, entry ``[b, x, d]`` = the 2-D
    convolution (padding 1) of frame x with the kernel's time slice d."""
    batch, frames = maps.shape[:2]
    out = weight.shape[0]
    kernel = weight.permute(2, 0, 1, 3, 4).flatten(0, 1)  # [3*O, C, 3, 3]
    taps = F.conv2d(maps.flatten(0, 1), kernel, padding=1)  # [B*T, 3*O, H, W]
    return taps.unflatten(0, (batch, frames)).unflatten(2, (3, out))


def kernel_taps(vectors: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Each kernel tap of a 3x3x3 convolution applied to vectors: ``vectors [B, T, C]``,
    ``weight [O, C, 3, 3, 3]`` -> ``[B, T, 3, O, 3, 3]`` (time tap, output, spatial taps)."""
    return torch.einsum("btc,ocdij->btdoij", vectors, weight)


def spread_taps(taps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """:func:`frame_taps` of maps constant over space, from their :func:`kernel_taps`
    ``[..., 3, 3]`` -> ``[..., H, W]``: at (h, w) only the spatial taps that fall inside the
    frame (padding 1) contribute."""
    rows = _inside_taps(height, taps)  # [H, 3]
    cols = _inside_taps(width, taps)  # [W, 3]
    inside = (rows[:, None, :, None] * cols[None, :, None, :]).flatten(2).flatten(0, 1)  # [HW, 9]
    return (taps.flatten(-2) @ inside.T).unflatten(-1, (height, width))


def _inside_taps(length: int, like: torch.Tensor) -> torch.Tensor:
    # [L, 3]: 1 where position l + k - 1 of a padding-1 kernel tap k is inside 0..L-1
    position = (
        torch.arange(length, device=like.device)[:, None] + torch.arange(3, device=like.device) - 1
    )
    return ((position >= 0) & (position < length)).to(like.dtype)


def time_shift_sum(taps: torch.Tensor) -> torch.Tensor:
    """Complete a 3x3x3 convolution along time (padding 1): ``taps [..., T, 3, O, H, W]`` ->
    ``[..., T, O, H, W]`` with output[t] = sum_d taps[t + d - 1, d]."""
    frames = taps.shape[-5]
    zeros = taps.new_zeros(*taps.shape[:-5], 1, *taps.shape[-4:])
    padded = torch.cat([zeros, taps, zeros], dim=-5)  # [..., T+2, 3, O, H, W]
    return sum(padded.narrow(-5, d, frames).select(-4, d) for d in range(3))


def time_shift_weights(attention: torch.Tensor) -> torch.Tensor:
    """``attention [..., T(x), T(y)]`` -> ``[..., T(t), 3, T(y)]`` with entry ``[t, d, y]`` =
    attention[t + d - 1, y] (0 outside): the time taps of a padding-1 convolution."""
    frames = attention.shape[-2]
    zeros = attention.new_zeros(*attention.shape[:-2], 1, attention.shape[-1])
    padded = torch.cat([zeros, attention, zeros], dim=-2)  # [..., T+2, T]
    return torch.stack([padded.narrow(-2, d, frames) for d in range(3)], dim=-2)


def masked_pool(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Weighted spatial sums of every frame under several masks: ``maps [..., T, C, H, W]``,
    ``masks [..., T, H, W, M]`` -> ``[..., T, C, M]``, as one batched matmul that reads the
    maps in place (an einsum would first copy them into its own layout)."""
    return maps.flatten(-2) @ masks.flatten(-3, -2)


def framewise_cosine_distance(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ``[..., T, C]`` x ``[..., T, C]`` -> ``[...]`` = sum_t (1 - cos), in [0, 2T]."""
    return (1 - F.cosine_similarity(support, query, dim=-1, eps=EPS)).sum(dim=-1)


@MODELS.register_module(name="ta2n")
class TA2N(FewShotRecognizer):
    feature_kind = "maps"
    paper = (
        "Li et al., TA2N: Two-Stage Action Alignment Network for Few-Shot Action Recognition, "
        "AAAI 2022"
    )

    def __init__(
        self,
        backbone: dict,
        dropout: float = 0.5,
        use_ttm: bool = True,
        use_tc: bool = True,
        use_sc: bool = True,
        tc_residual: bool = True,
        loc_channels: Sequence[int] = (64, 128),
        loc_hidden: int = 32,
        offset_channels: Sequence[int] = (128, 64),
        offset_scale: float = 0.75,
        perturb_delta: float = 0.2,
        perturb_decay_every: int | None = 8000,
        perturb_at_test: bool = False,
        shot_reference: str = "random",
        pair_chunk: int = 1024,
        **kwargs,
    ) -> None:
        super().__init__(backbone=backbone, **kwargs)
        if shot_reference not in SHOT_REFERENCES:
            raise ValueError(f"shot_reference must be one of {SHOT_REFERENCES}")
        channels = self.channels
        self.use_ttm, self.use_tc, self.use_sc = use_ttm, use_tc, use_sc
        self.tc_residual, self.offset_scale = tc_residual, offset_scale
        self.perturb_decay_every, self.perturb_at_test = perturb_decay_every, perturb_at_test
        self.shot_reference, self.pair_chunk = shot_reference, pair_chunk
        self.dropout = nn.Dropout(dropout)

        loc1, loc2 = loc_channels
        self.locnet = nn.Sequential(
            nn.Conv3d(channels, loc1, 3, padding=1),
            nn.BatchNorm3d(loc1),
            HalvingMaxPool3d(time=True),
            nn.ReLU(),
            nn.Conv3d(loc1, loc2, 3, padding=1),
            nn.BatchNorm3d(loc2),
            HalvingMaxPool3d(time=True),
            nn.ReLU(),
            nn.AdaptiveMaxPool3d(1),
            nn.Flatten(),
            nn.Linear(loc2, loc_hidden),
            nn.ReLU(),
            nn.Linear(loc_hidden, 2),
            nn.Tanh(),
        )
        with torch.no_grad():  # theta starts at (tanh 2, 0) for every video
            self.locnet[-2].weight.zero_()
            self.locnet[-2].bias.copy_(torch.tensor([2.0, 0.0]))

        # TC: W_k, W_q, W_v (1x1 Conv1d C -> C without bias); K-shot alignment: W'_k, W'_q, W'_v
        self.tc_key, self.tc_query, self.tc_value = (
            nn.Linear(channels, channels, bias=False) for _ in range(3)
        )
        self.align_key, self.align_query, self.align_value = (
            nn.Linear(channels, channels, bias=False) for _ in range(3)
        )

        hidden, squeeze = offset_channels
        self.offset_conv = nn.Conv3d(2 * channels, hidden, 3, padding=1)  # on Cat(f~_s, f~_q)
        self.offset_net = nn.Sequential(
            nn.BatchNorm3d(hidden),
            HalvingMaxPool3d(time=False),
            nn.ReLU(),
            nn.Conv3d(hidden, hidden, 3, padding=1),
            nn.BatchNorm3d(hidden),
            HalvingMaxPool3d(time=False),
            nn.ReLU(),
            nn.AdaptiveMaxPool3d((None, 1, 1)),
            nn.Flatten(2),  # [P, hidden, T]
            nn.Conv1d(hidden, squeeze, 1),
            nn.ReLU(),
            nn.Conv1d(squeeze, 2, 1),
            nn.Tanh(),
        )
        with torch.no_grad():  # offsets start at 0
            self.offset_net[-2].weight.zero_()
            self.offset_net[-2].bias.zero_()

        self.register_buffer("perturb_delta", torch.tensor(float(perturb_delta)))
        self.register_buffer("perturb_directions", torch.tensor(PERTURBATIONS, dtype=torch.float))
        self.register_buffer("train_iterations", torch.tensor(0, dtype=torch.long))

    # --- perturbation schedule ------------------------------------------------------------

    def decay(self) -> None:
        """Halve the perturbation amplitude delta (the code's ``decay``)."""
        self.perturb_delta.mul_(0.5)

    def forward(
        self,
        support,
        support_labels,
        query,
        query_labels=None,
        mode: str = "tensor",
        features: bool = False,
        **episode,
    ):
        out = super().forward(
            support, support_labels, query, query_labels, mode, features, **episode
        )
        if mode == "loss" and self.training:
            self.train_iterations += 1
            every = self.perturb_decay_every
            if every and int(self.train_iterations) % every == 0:
                self.decay()
        return out

    # --- per video ------------------------------------------------------------------------

    rebuildable_rows = ("maps",)  # warped again from the stored features and theta

    def warp_parameters(self, features: torch.Tensor) -> torch.Tensor:
        """The localisation net: ``[B, T, C, H, W]`` -> theta ``[B, 2]`` in (-1, 1)^2."""
        return self.locnet(features.transpose(1, 2))

    def encode(self, features: torch.Tensor, shots: int | None = None) -> dict[str, torch.Tensor]:
        """``features [B, T, C, H, W]`` -> per-video tensors: ``maps`` (the TTM output f^),
        ``one_*`` for 1-shot episodes (TC projections and offset-predictor taps of f^),
        ``many_*`` and ``align_*`` for K-shot ones (the same of W'_v f^, and the shot-alignment
        projections). W'_v f^ itself is never stored: ``compare`` applies W'_v after the
        spatial pooling, which commutes with it. ``shots`` (when known) skips the branch an
        episode does not use."""
        features = self.dropout(features)
        encoded = {}
        if self.use_ttm:
            encoded["theta"] = self.warp_parameters(features)  # [B, 2]
            features = temporal_warp(features, encoded["theta"])  # [B, T, C, H, W]
        pooled = features.mean(dim=(-2, -1))  # [B, T, C]
        encoded["maps"] = features
        if shots is None or shots == 1:
            encoded.update(self._encode_branch("one", features, pooled, None))
        if shots is None or shots > 1:
            encoded["align_key"] = self.align_key(pooled)
            encoded["align_query"] = self.align_query(pooled)
            mixed = self.align_value(pooled)  # pool(W'_v f^) = W'_v pool(f^)
            encoded.update(self._encode_branch("many", features, mixed, self.align_value.weight))
        return encoded

    def encode_for_test(self, features: torch.Tensor, shots: int) -> dict[str, torch.Tensor]:
        # only the branch of the test's shot count
        return self.encode(features, shots=shots)

    def _with_maps(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rows ``{name: [E, S, ...]}`` with ``maps``: as encoded, or, when the test did not
        keep them (``rebuildable_rows``), warped again from the stored ``features [E, S, T, C,
        H, W]`` and ``theta [E, S, 2]``: the same arithmetic on the same values."""
        if "maps" in rows:
            return rows
        rows = dict(rows)
        features = rows.pop("features")
        if not self.use_ttm:
            return {**rows, "maps": features}
        warped = temporal_warp(features.flatten(0, 1), rows["theta"].flatten(0, 1))
        return {**rows, "maps": warped.view(features.shape)}

    def _encode_branch(self, branch, maps, pooled, mix) -> dict[str, torch.Tensor]:
        """What a support video (prototype) and a query need per pair, for the maps
        ``mix @ maps`` (``mix [C, C]`` over channels, None: the maps themselves):
        ``maps [B, T, C, H, W]``, their spatial mean ``pooled [B, T, C]`` (already mixed)."""
        height, width = maps.shape[-2:]
        channels = maps.shape[2]
        out = {}
        if self.use_tc:
            out["value"] = self.tc_value(pooled)  # W_v s: residual (support) and V (query)
            out["key"] = self.tc_key(pooled)
            out["query"] = self.tc_query(pooled)
        if self.sc_active:
            weight_s = self.offset_conv.weight[:, :channels]  # [O, C, 3, 3, 3]
            weight_q = self.offset_conv.weight[:, channels:]
            # the convolution of mix @ maps is that of maps with the composed kernel
            mixed_s = weight_s if mix is None else torch.einsum("ocdij,ce->oedij", weight_s, mix)
            mixed_q = weight_q if mix is None else torch.einsum("ocdij,ce->oedij", weight_q, mix)
            support_taps = frame_taps(maps, mixed_s)  # [B, T, 3, O, H, W]
            if self.use_tc:  # the taps of f~_s = f^_s + W_v s (broadcast)
                constant = kernel_taps(out["value"], weight_s)  # [B, T, 3, O, 3, 3]
                support_taps = support_taps + spread_taps(constant, height, width)
                out["query_taps"] = kernel_taps(out["value"], weight_q)  # [B, T, 3, O, 3, 3]
            if mix is None:  # 1-shot: the prototype is the shot, its convolution is final
                out["support_conv"] = time_shift_sum(support_taps)  # [B, T, O, H, W]
            else:  # K-shot: prototypes mix shots over time before the time taps add up
                out["support_taps"] = support_taps
            out["query_conv"] = time_shift_sum(frame_taps(maps, mixed_q))  # [B, T, O, H, W]
        return {f"{branch}_{name}": value for name, value in out.items()}

    @property
    def sc_active(self) -> bool:
        # SC acts on maps; with the paper's pooled TC output (no residual) there are none
        return self.use_sc and not (self.use_tc and not self.tc_residual)

    # --- per episode ----------------------------------------------------------------------

    def head_episodes(self, support, support_labels, query):
        # support [E, S, T, C, H, W], labels [E, S], query [E, Q, T, C, H, W] -> [E, Q, N]
        episodes, size, queries = support.shape[0], support.shape[1], query.shape[1]
        shots = size // n_way_of(support_labels)
        # support and query in separate batches, as the code calls its localisation net
        encoded_support = self.encode(support.flatten(0, 1), shots=shots)
        encoded_query = self.encode(query.flatten(0, 1), shots=shots)
        return self.compare(
            unflatten_rows(encoded_support, (episodes, size)),
            support_labels,
            unflatten_rows(encoded_query, (episodes, queries)),
        )

    def compare(self, support, support_labels, query):
        # support {name: [E, S, ...]}, labels [E, S], query {name: [E, Q, ...]} -> [E, Q, N]
        n_way = n_way_of(support_labels)
        episodes, size = support_labels.shape
        shots = size // n_way
        counts = F.one_hot(support_labels, n_way).sum(dim=1)  # [E, N]
        if size % n_way or bool((counts != shots).any()):
            raise ValueError("TA2N needs the same number of shots in every class")
        branch = "one" if shots == 1 else "many"
        support, query = self._with_maps(support), self._with_maps(query)
        names = ["maps"] + [f"{branch}_{n}" for n in SUPPORT_KEYS if f"{branch}_{n}" in support]
        if branch == "many":
            names += ["align_key", "align_query"]
        support = {name: support[name] for name in names}
        query = {
            name.removeprefix(f"{branch}_"): value
            for name, value in query.items()
            if name.startswith(f"{branch}_") or name == "maps"
        }  # [E, Q, ...]
        order = support_labels.argsort(dim=1, stable=True)  # [E, S]: classes grouped
        pairs_per_episode = next(iter(query.values())).shape[1] * n_way
        step = episodes if self.training else max(1, self.pair_chunk // pairs_per_episode)
        parts = []
        for start in range(0, episodes, step):
            rows = slice(start, start + step)
            chunk = {
                name.removeprefix(f"{branch}_"): value[rows] for name, value in support.items()
            }
            if shots == 1:  # the shots are the prototypes: score them in support order
                logits = self._compare_prototypes(chunk, take_rows(query, rows))  # [e, Q, S]
                slot = order[rows][:, None].expand_as(logits)  # the support slot of class n
                parts.append(logits.gather(2, slot))  # [e, Q, N]
            else:
                prototypes = self._prototypes(chunk, order[rows], n_way)
                query_rows = take_rows(query, rows)
                parts.append(self._compare_prototypes(prototypes, query_rows, value_map=True))
        return torch.cat(parts)

    def _prototypes(self, support, order, n_way: int) -> dict[str, torch.Tensor]:
        """K-shot prototypes: ``support {name: [E, S, T, ...]}`` in any order,
        ``order [E, S]`` the slots grouped by class (K per class) -> ``{name: [E, N, T, ...]}``,
        prototype[y] = mean_k sum_x A_k[x, y] shot_k[x] for every per-video quantity linear in
        the shot's maps (W'_v is applied after pooling, see ``encode``)."""
        episodes, size = order.shape
        shots = size // n_way
        flat = (order + size * torch.arange(episodes, device=order.device)[:, None]).flatten()
        keys, refs = (
            support[name].flatten(0, 1).index_select(0, flat).unflatten(0, (episodes, n_way, shots))
            for name in ("align_key", "align_query")
        )  # [E, N, K, T, C]
        frames = keys.shape[3]
        scale = math.sqrt(keys.shape[-1])
        scores = torch.einsum("enkxc,enryc->enrkxy", keys, refs) / scale  # [E, N, R, K, T, T]
        attention = scores.softmax(dim=-2)  # over the shot's time x
        if self.training and self.shot_reference == "random":
            reference = torch.randint(shots, (episodes, n_way), device=attention.device)
            e = torch.arange(episodes, device=attention.device)[:, None]
            n = torch.arange(n_way, device=attention.device)[None, :]
            attention = attention[e, n, reference]  # [E, N, K, T, T]
        else:
            attention = attention.mean(dim=2)  # every reference, equally: [E, N, K, T, T]
        # one matrix over the support as it lies (no copy of the maps into class order)
        weights = (attention / shots).permute(0, 1, 4, 2, 3)  # [E, N, T(y), K, T(x)]
        slots = order.view(episodes, n_way, 1, shots, 1).expand_as(weights)
        dense = weights.new_zeros(episodes, n_way, frames, size, frames)
        dense = dense.scatter(3, slots, weights).view(episodes, n_way * frames, size * frames)
        out = {}
        for name, value in support.items():
            if name in ("align_key", "align_query", "theta"):  # not mixed over shots
                continue
            mixed = dense @ value.flatten(1, 2).flatten(2)  # [E, N*T, F]
            out[name] = mixed.view(episodes, n_way, frames, *value.shape[3:])
        return out

    def _compare_prototypes(self, proto, query, value_map: bool = False):
        """proto ``{name: [E, N, T, ...]}``, query ``{name: [E, Q, T, ...]}`` -> logits
        ``[E, Q, N]``; ``value_map``: the maps are f^ and the pair lives in W'_v's space
        (K-shot), so W'_v is applied to the pooled features."""
        proto_maps, query_maps = proto["maps"], query["maps"]  # [E, N|Q, T, C, H, W]
        height, width = proto_maps.shape[-2:]
        if self.use_tc:
            scale = math.sqrt(proto["key"].shape[-1])
            scores = torch.einsum("enxc,eqyc->eqnxy", proto["key"], query["query"]) / scale
            attention = scores.softmax(dim=-1)  # M: over query time y, [E, Q, N, T, T]
            n_way, frames = attention.shape[2:4]
            aligned = (attention.flatten(2, 3) @ query["value"]).unflatten(2, (n_way, frames))
            # sum_y M[x, y] V[:, y]: [E, Q, N, T, C]
            residual = proto["value"][:, None]  # W_v s: [E, 1, N, T, C]
            if not self.tc_residual:  # paper Eq. 3: pooled outputs, nothing for SC to move
                return -framewise_cosine_distance(residual, aligned)
        if self.sc_active:
            offsets = self._offsets(proto, query, attention if self.use_tc else None)
            perturb = None
            if self.training or self.perturb_at_test:
                perturb = self.perturb_directions * self.perturb_delta
            support_mask = coordination_masks(offsets, height, width, perturb)  # [E,Q,N,T,H,W]
            query_mask = coordination_masks(-offsets, height, width, perturb)
            pooled_support = masked_pool(proto_maps, support_mask.permute(0, 2, 3, 4, 5, 1))
            pooled_query = masked_pool(query_maps, query_mask.permute(0, 1, 3, 4, 5, 2))
            pooled_support = pooled_support.permute(0, 4, 1, 2, 3)  # [E, Q, N, T, C]
            pooled_query = pooled_query.permute(0, 1, 4, 2, 3)  # [E, Q, N, T, C]
        else:
            pooled_support = proto_maps.mean(dim=(-2, -1))[:, None]  # [E, 1, N, T, C]
            pooled_query = query_maps.mean(dim=(-2, -1))[:, :, None]  # [E, Q, 1, T, C]
        if value_map:
            # K-shot: prototype and query live in W'_v's space; W'_v commutes with the pooling
            pooled_support = self.align_value(pooled_support)
            pooled_query = self.align_value(pooled_query)
        if self.use_tc:  # the broadcast TC terms pool to themselves (masks sum to 1)
            pooled_support = pooled_support + residual
            pooled_query = pooled_query + aligned
        return -framewise_cosine_distance(pooled_support, pooled_query)

    def _offsets(self, proto, query, attention) -> torch.Tensor:
        """SC offsets o ``[E, Q, N, T, 2]`` from the first Conv3d of Cat(f~_s, f~_q),
        assembled from per-video taps, then the rest of the offset predictor."""
        if "support_conv" in proto:
            support_conv = proto["support_conv"]  # [E, N, T, O, H, W]
        else:
            support_conv = time_shift_sum(proto["support_taps"])
        support_conv = support_conv + self.offset_conv.bias.view(-1, 1, 1)
        query_conv = query["query_conv"]  # [E, Q, T, O, H, W]
        height, width = query_conv.shape[-2:]
        if attention is None:
            pre = support_conv[:, None] + query_conv[:, :, None]  # [E, Q, N, T, O, H, W]
        else:  # the broadcast sum_y M[x, y] V[:, y] of f~_q, then the per-video parts
            shifted = time_shift_weights(attention).flatten(-2)  # [E, Q, N, T, 3*T]
            taps = query["query_taps"].transpose(2, 3).flatten(2, 3)  # [E, Q, 3*T, O, 3, 3]
            pre = shifted.flatten(2, 3) @ taps.flatten(3)  # [E, Q, N*T, O*3*3]
            pre = pre.view(*shifted.shape[:4], *taps.shape[-3:])  # [E, Q, N, T, O, 3, 3]
            pre = spread_taps(pre, height, width)  # [E, Q, N, T, O, H, W]
            pre += support_conv[:, None]
            pre += query_conv[:, :, None]
        batch = pre.shape[:3]
        net_input = pre.flatten(0, 2).transpose(1, 2)  # [P, O, T, H, W]
        offsets = self.offset_net(net_input) * self.offset_scale  # [P, 2, T]
        return offsets.transpose(1, 2).unflatten(0, batch)  # [E, Q, N, T, 2]
