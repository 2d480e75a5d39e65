"""FewShotRecognizer: the episode plumbing every method shares, written once.

A method is a frame backbone plus a few-shot head. The base class embeds clips with the
backbone (pooled ``[T, C]`` or maps ``[T, C, h, w]`` per video, as the head declares in
``feature_kind``) and turns logits into a loss or predictions. A head has two parts:

- ``encode(features [B, T, ...])``: the per-video, episode-independent part (a temporal warp,
  tuple projections, second-order descriptors). It returns a tensor, or a dict of tensors,
  with one row per video. At test time it runs **once per test video**, like the backbone,
  and every episode reads its rows: a head whose per-video work is heavy (TRX's tuple maps,
  A²M²-Net's covariance square roots) then costs little more per episode than ProtoNet. The
  test calls it through ``encode_for_test(features, shots, **video_context)``, where a head
  keeps only what episodes of that shot count read, or adds rows that depend on the video's
  own class (CLIP-FSAR); ``rebuildable_rows`` names rows the test may leave out and give back
  as the stored ``"features"`` when all videos' rows would not fit its memory budget.
- ``compare(support, support_labels, query)``: the episode-dependent part, batched over
  episodes: encoded support ``[E, N*K, ...]``, labels ``[E, N*K]``, encoded query
  ``[E, Q, ...]`` -> logits ``[E, Q, N]``, higher = more likely.

``head(support [N*K, T, ...], support_labels [N*K], query [Q, T, ...]) -> logits [Q, N]`` is
the two together for one episode. Labels are 0..N-1 in any order: a head must not assume the
support is sorted by class (the harness shuffles it).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from fsarbench.registry import MODELS
from fsarbench.runtime import autocast

FEATURE_KINDS = ("pooled", "maps")

# What ``encode`` returns: one tensor, or named tensors, each with one row per video.
Encoded = torch.Tensor | dict[str, torch.Tensor]


class FewShotRecognizer(BaseModel):
    """Backbone + few-shot head, as an MMEngine model.

    ``forward(support, support_labels, query, query_labels=None, mode=..., features=False)``:
    ``support`` / ``query`` are uint8 clips ``[B, T, 3, H, W]`` or, with ``features=True``,
    stored features. Modes: ``loss`` -> ``{"loss_cls": ...}`` plus a head's
    ``auxiliary_losses``, ``predict`` and ``tensor`` -> logits ``[Q, N]``. Extra keyword
    arguments are the training episode's own data, which ``forward_context`` turns into the
    head's arguments (CLIP-FSAR: its classes' text).
    """

    feature_kind: ClassVar[str] = "pooled"
    paper: ClassVar[str] = ""
    # A head that embeds class names (CLIP-FSAR) needs a backbone with a text tower and the
    # names of each episode's classes: ``episode_context`` gives its ``compare`` the latter.
    needs_text: ClassVar[bool] = False
    # The version of what this head computes: part of every run's identity (the config's
    # ``code_version``), so a change that moves its numbers, made with a bump here, is never
    # served a record or a trained stage of the old code.
    code_version: ClassVar[int] = 1
    # Rows of ``encode_for_test`` that ``compare`` can rebuild from the stored features of its
    # videos (given as a ``"features"`` row instead): when all test videos' rows would exceed
    # the evaluation's memory budget, the test keeps the rest and reads the features back
    # per batch of episodes (TA²N: its warped maps, 82% of its rows at paper size).
    rebuildable_rows: ClassVar[tuple[str, ...]] = ()

    def __init__(self, backbone: dict, data_preprocessor: dict | None = None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if self.feature_kind not in FEATURE_KINDS:
            raise ValueError(f"feature_kind must be one of {FEATURE_KINDS}")
        self.backbone = MODELS.build(backbone)
        self.backbone.check_kind(self.feature_kind)
        self.channels = self.backbone.channels(self.feature_kind)  # C of the head's features
        self.amp: str | None = None  # bf16 / fp16 autocast of the backbone (fsarbench.runtime)

    def init_weights(self) -> None:
        """Keep the weights as they are: they come from the run's seed or from a file, and
        MMEngine's Runner, which calls this before training, must not re-initialise them."""

    # --- features -------------------------------------------------------------------------

    def embed(self, clips: torch.Tensor, kind: str | None = None) -> torch.Tensor:
        """uint8 clips ``[B, T, 3, H, W]`` -> features ``[B, T', C]`` (pooled) or
        ``[B, T', C, h, w]`` (maps); ``kind`` defaults to what the head declares, ``T'`` is the
        backbone's ``time_steps(T)``."""
        device = self.backbone.mean.device
        pixels = clips.to(device=device, dtype=torch.float32)  # [B, T, 3, H, W]
        pixels = (pixels - self.backbone.mean) / self.backbone.std
        with autocast(device, self.amp):  # the backbone is where mixed precision pays
            features = self.backbone(pixels, kind or self.feature_kind)
        return features.float()  # heads compute in float32

    def episode_context(self, episodes, start: int, stop: int) -> dict:
        """Extra keyword arguments of ``compare`` for episodes ``start:stop`` of an
        :class:`~fsarbench.data.episodes.EpisodeSet` (none for most heads)."""
        return {}

    # --- heads ----------------------------------------------------------------------------

    def encode(self, features: torch.Tensor) -> Encoded:
        """Per-video part of the head: features ``[B, T, ...]`` -> a tensor or a dict of tensors
        with ``B`` rows. It must not depend on the episode (it runs once per test video)."""
        return features

    def video_context(self, episodes) -> dict[str, torch.Tensor]:
        """Extra keyword arguments of ``encode_for_test``, one row per video of an
        :class:`~fsarbench.data.episodes.EpisodeSet` (in ``video_ids`` order): what a video's
        test-time rows may depend on beside its features (CLIP-FSAR: its own class's text).
        None for most heads."""
        return {}

    def encode_for_test(self, features: torch.Tensor, shots: int, **video_context) -> Encoded:
        """What the test keeps per video (it encodes every test video once, before any
        episode) for episodes of ``shots`` shots per class: ``encode`` by default. A head whose
        rows depend on the shot count keeps only what its episodes read; one whose support
        rows depend on the video's class (``video_context``) computes them here."""
        return self.encode(features)

    def compare_flops(self, n_way: int, shots: int, queries: int, frames: int) -> float | None:
        """Floating-point operations of ``compare`` for one episode (multiply-adds count
        two), where a head states them: the work a roofline divides by the matrix-multiply
        rate (``tools/speed_heads.py``). None: not stated."""
        return None

    def compare(
        self, support: Encoded, support_labels: torch.Tensor, query: Encoded
    ) -> torch.Tensor:
        """Episode part of the head, batched over episodes: encoded support (rows ``[E, S]``),
        labels ``[E, S]``, encoded query (rows ``[E, Q]``) -> logits ``[E, Q, N]``.

        A method may instead implement ``head`` alone (one episode, no per-video part): this
        default then loops over the episodes."""
        if type(self).head is FewShotRecognizer.head:
            raise NotImplementedError(
                f"{type(self).__name__} implements neither compare() nor head()"
            )
        return torch.stack(
            [
                self.head(s, labels, q)
                for s, labels, q in zip(support, support_labels, query, strict=True)
            ]
        )

    def head_episodes(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, **context
    ) -> torch.Tensor:
        """Many episodes of one shape: ``[E, N*K, T, ...]``, ``[E, N*K]``, ``[E, Q, T, ...]`` ->
        logits ``[E, Q, N]``; ``context``: what ``episode_context`` gives, per episode."""
        episodes, shots, queries = support.shape[0], support.shape[1], query.shape[1]
        encoded = self.encode(torch.cat([support.flatten(0, 1), query.flatten(0, 1)]))
        encoded_support = take_rows(encoded, slice(0, episodes * shots))
        encoded_query = take_rows(encoded, slice(episodes * shots, None))
        return self.compare(
            unflatten_rows(encoded_support, (episodes, shots)),
            support_labels,
            unflatten_rows(encoded_query, (episodes, queries)),
            **context,
        )

    def head(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, **context
    ) -> torch.Tensor:
        """One episode: ``[N*K, T, ...]``, ``[N*K]``, ``[Q, T, ...]`` -> logits ``[Q, N]``;
        ``context``: one episode's (for CLIP-FSAR, ``class_text [N, D]``)."""
        batched = {name: value[None] for name, value in context.items()}
        return self.head_episodes(support[None], support_labels[None], query[None], **batched)[0]

    # --- MMEngine -------------------------------------------------------------------------

    def forward(
        self,
        support: torch.Tensor,
        support_labels: torch.Tensor,
        query: torch.Tensor,
        query_labels: torch.Tensor | None = None,
        mode: str = "tensor",
        features: bool = False,
        **episode,
    ):
        """``episode``: what a training episode carries beyond clips and labels, for heads
        that read it (CLIP-FSAR: ``class_ids`` and ``split_classes``)."""
        if not features:
            support, query = self.embed(support), self.embed(query)
        logits = self.head(support, support_labels, query, **self.forward_context(**episode))
        if mode in ("tensor", "predict"):
            return logits  # [Q, N]
        if mode == "loss":
            if query_labels is None:
                raise ValueError("mode='loss' needs query_labels")
            return {
                "loss_cls": F.cross_entropy(logits, query_labels),
                **self.auxiliary_losses(support, support_labels, query, query_labels, **episode),
            }
        raise ValueError(f"unknown mode {mode!r}: use loss, predict or tensor")

    def forward_context(self, **episode) -> dict:
        """One episode's extra ``head`` arguments from its ``episode`` data (none for most
        heads, which take no episode data)."""
        if episode:
            raise TypeError(f"{type(self).__name__} takes no episode data ({', '.join(episode)})")
        return {}

    def auxiliary_losses(self, support, support_labels, query, query_labels, **episode) -> dict:
        """Losses beside the query cross-entropy, from the episode's features ``[S, T, ...]``,
        ``[Q, T, ...]`` (none for most heads)."""
        return {}


def one_hot_mean(labels: torch.Tensor, values: torch.Tensor, n_way: int) -> torch.Tensor:
    """Per-class mean of ``values`` over the support: labels ``[E, S]``, values ``[E, S, ...]``
    -> ``[E, N, ...]``. Works for any support order."""
    one_hot = F.one_hot(labels, n_way).to(values.dtype)  # [E, S, N]
    counts = one_hot.sum(dim=1)  # [E, N]
    sums = torch.einsum("esn,es...->en...", one_hot, values)  # [E, N, ...]
    return sums / counts.view(*counts.shape, *([1] * (sums.dim() - 2)))


def n_way_of(support_labels: torch.Tensor) -> int:
    return int(support_labels.max()) + 1


def take_rows(encoded: Encoded, rows) -> Encoded:
    """Rows of an encoded batch (a tensor or a dict of tensors): ``rows`` indexes dim 0."""
    if isinstance(encoded, dict):
        return {name: value[rows] for name, value in encoded.items()}
    return encoded[rows]


def unflatten_rows(encoded: Encoded, shape: tuple[int, ...]) -> Encoded:
    """``[E*S, ...]`` -> ``[E, S, ...]`` for a tensor or each tensor of a dict."""
    if isinstance(encoded, dict):
        return {name: value.unflatten(0, shape) for name, value in encoded.items()}
    return encoded.unflatten(0, shape)


def empty_rows(like: Encoded, rows: int) -> Encoded:
    """Uninitialised storage for ``rows`` rows shaped like those of ``like`` (a tensor or a
    dict of tensors), to be filled chunk by chunk (no list of chunks, no concatenation)."""
    if isinstance(like, dict):
        return {name: empty_rows(value, rows) for name, value in like.items()}
    return like.new_empty((rows, *like.shape[1:]))


def write_rows(storage: Encoded, rows: slice, values: Encoded) -> None:
    """``storage[rows] = values`` for a tensor or each tensor of a dict."""
    if isinstance(storage, dict):
        for name, value in storage.items():
            value[rows] = values[name]
    else:
        storage[rows] = values


def row_bytes(encoded: Encoded) -> int:
    """Bytes of one row of an encoded batch (a tensor or a dict of tensors)."""
    tensors = encoded.values() if isinstance(encoded, dict) else [encoded]
    return sum(t[0].numel() * t.element_size() for t in tensors if len(t))
