"""CLIP-FSAR (Wang et al., IJCV 2023): a head for CLIP backbones.

Per video, CLIP frame features ``f [T, D]`` (the projected class tokens). Three parts:

1. **Video-text matching loss** (training): ``v = mean_t f``; ``class_logits[c] = s * cos(v,
   text_c)`` over every base (train) class (the cosine as the released code forms it,
   ``v·t / (|v| |t| + 0.01)``: ``cosine_epsilon``), ``s`` a learnable scale initialised to 1.0;
   cross-entropy against the video's base class, weighted by ``text_loss_weight`` (lambda_cls:
   3.0 in the SSv2-Full config, 1.5 in the K100 one).
2. **Prototype modulation**: a support video's tokens ``[f_1..f_T, text_y]`` go through a
   one-layer temporal Transformer ``Omega``, the released code's block (8 heads; one
   LayerNorm before bias-free q, k, v projections; dropout 0.2 after the output projection;
   residual; an FFN of 2048 with GELU and dropout 0.05 and no LayerNorm before it; residual:
   :class:`TemporalTransformer`); its first T outputs are kept. The text token is the text
   tower's feature as it is, not normalised, as in the released code. Queries go through the *same*
   ``Omega`` with their T frame tokens alone. A class prototype is the mean of its K modulated
   shots (``merge_before``: mean of the raw shots, then ``Omega``).
3. **Metric**: OTAM (``otam_directions``) between prototype and query sequences on the
   released cosine distance (``1 - cosine_with_epsilon``), lambda 0.5,
   ``first_col_vertical=True``, the 3-term last column, the **sum** of both directions;
   logits = -distance. Optional test-time **fusion** (``fusion=True``, off by
   default): ``p_text = softmax(s * cos(mean-frame query, text))`` and ``p_vis = softmax((8 -
   d) / 8)`` over the N classes; the score is ``p_text^0.9 * p_vis^0.1`` (its log is returned:
   the same ranking).

Text features are the frozen CLIP text tower's embeddings of ``prompt.format(name)`` ("a photo
of {}"), computed once per class name (``fsarbench.benchmarks.class_names`` turns split labels
into names; SSv2-Full's come from SSv2's annotation files).

Deviations from the released code (configs/clip_fsar/README.md, 'Deviations', lists them too):

- None in the computation of a test episode's logits: with the same features, text features
  and weights, the released ``CNN_OTAM_CLIPFSAR`` test forward and this head agree to float32
  rounding (configs/clip_fsar/README.md gives the measurement). ``Omega`` has no positional
  encoding, as in the released head (the frame order reaches the metric through OTAM).
- Whether the released training script freezes the CLIP visual encoder was not confirmed;
  here that is the schedule's choice (``frozen`` trains the head on stored
  features, ``finetune`` trains the encoder too).
- On synth, the backbone is the harness's CLIP stand-in or whatever CLIP folder is given; the
  paper's recipe (4 GPUs, 10 epochs) is in the real-benchmark schedule only.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fsarbench.errors import FsarbenchError
from fsarbench.methods.base import FewShotRecognizer, n_way_of, one_hot_mean
from fsarbench.methods.otam import EPS, otam_directions
from fsarbench.registry import MODELS


class TemporalTransformer(nn.Module):
    """CLIP-FSAR's Omega, the block of the released code (one layer): ``tokens [B, L, D] ->
    [B, L, D]``,

        x   = tokens + Dropout_a(W_o · softmax(Q Kᵀ / sqrt(D / heads)) V),
              with Q, K, V = LN(tokens) W_q, W_k, W_v   (one LayerNorm, projections bias-free)
        out = x + Dropout_f(W_2 · Dropout_f(GELU(W_1 x + b_1)) + b_2)   (no LayerNorm first)

    ``attn_dropout`` (0.2) drops the attention block's projected output, ``ffn_dropout``
    (0.05) the feed-forward's hidden and output, as the released code does; both act in
    training only."""

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        ffn_dim: int = 2048,
        attn_dropout: float = 0.2,
        ffn_dropout: float = 0.05,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"feature width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm = nn.LayerNorm(dim)  # shared by q, k and v
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.to_out = nn.Linear(dim, dim)
        self.out_dropout = nn.Dropout(attn_dropout)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim),
            nn.GELU(),
            nn.Dropout(ffn_dropout),
            nn.Linear(ffn_dim, dim),
            nn.Dropout(ffn_dropout),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        normed = self.norm(tokens)  # [B, L, D]

        def split_heads(projection: nn.Linear) -> torch.Tensor:  # -> [B, heads, L, D / heads]
            return projection(normed).unflatten(-1, (self.heads, -1)).transpose(1, 2)

        q, k, v = split_heads(self.to_q), split_heads(self.to_k), split_heads(self.to_v)
        attended = F.scaled_dot_product_attention(q, k, v)  # [B, heads, L, D / heads]
        attended = self.to_out(attended.transpose(1, 2).flatten(-2))  # [B, L, D]
        hidden = tokens + self.out_dropout(attended)
        return hidden + self.ffn(hidden)


def cosine_with_epsilon(x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``x [..., M, D]``, ``y [..., N, D]`` -> ``x·y / (|x| |y| + epsilon)`` ``[..., M, N]``: the
    released code's cosine, whose epsilon (0.01) is added to the product of the norms, so it
    depends slightly on the features' scale; ``epsilon = 0`` is the plain cosine."""
    products = x @ y.transpose(-1, -2)  # [..., M, N]
    norms = x.norm(dim=-1)[..., :, None] * y.norm(dim=-1)[..., None, :]  # [..., M, N]
    return products / (norms + epsilon).clamp_min(EPS)


@MODELS.register_module(name="clip_fsar")
class CLIPFSAR(FewShotRecognizer):
    feature_kind = "pooled"
    needs_text: ClassVar[bool] = True
    # 2: Omega is the released code's block, its cosine has the released epsilon, and the text
    # token is not normalised (1: a pre-LN block of this project's own reading)
    code_version: ClassVar[int] = 2
    paper = (
        "Wang et al., CLIP-guided Prototype Modulating for Few-shot Action Recognition, IJCV 2023"
    )

    def __init__(
        self,
        backbone: dict,
        prompt: str = "a photo of {}",
        text_loss_weight: float = 1.0,
        heads: int = 8,
        ffn_dim: int = 2048,
        attn_dropout: float = 0.2,
        ffn_dropout: float = 0.05,
        cosine_epsilon: float = 0.01,
        lbda: float = 0.5,
        direction: str = "sum",
        merge_before: bool = False,
        fusion: bool = False,
        fusion_text_weight: float = 0.9,
        fusion_offset: float = 8.0,
        scale_init: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(backbone=backbone, **kwargs)
        if "{}" not in prompt:
            raise ValueError(f"prompt {prompt!r} has no {{}} for the class name")
        self.prompt, self.text_loss_weight = prompt, float(text_loss_weight)
        self.lbda, self.direction, self.merge_before = float(lbda), direction, merge_before
        self.fusion, self.fusion_text_weight = fusion, float(fusion_text_weight)
        self.fusion_offset = float(fusion_offset)
        self.cosine_epsilon = float(cosine_epsilon)
        self.omega = TemporalTransformer(self.channels, heads, ffn_dim, attn_dropout, ffn_dropout)
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))  # s of the text logits
        self.class_texts: dict[str, str] = {}  # split label -> class name, set by the run
        self._text_cache: dict[tuple[str, ...], torch.Tensor] = {}

    # --- text -----------------------------------------------------------------------------

    def set_class_texts(self, texts: dict[str, str]) -> None:
        """Split label -> class name (``class_names.class_texts``), for every split a run reads."""
        self.class_texts = dict(texts)
        self._text_cache.clear()

    def text_features(self, labels: tuple[str, ...]) -> torch.Tensor:
        """Prompt features ``[len(labels), D]`` of split class labels as the frozen text tower
        gives them (not normalised: the released code puts them into Omega as they are, and
        its cosine divides by their norm); the tower runs once per label set."""
        labels = tuple(labels)
        if labels not in self._text_cache:
            missing = [label for label in labels if label not in self.class_texts]
            if missing:
                raise FsarbenchError(
                    f"clip_fsar has no class name for {', '.join(missing[:3])}",
                    "run it through `fsarbench run`, which names every split's classes",
                )
            prompts = [self.prompt.format(self.class_texts[label]) for label in labels]
            self._text_cache[labels] = self.backbone.encode_text(prompts).detach()
        return self._text_cache[labels].to(self.scale.device)

    def episode_context(self, episodes, start: int, stop: int) -> dict:
        bank = self.text_features(episodes.class_names)  # [C_split, D]
        classes = torch.from_numpy(episodes.classes[start:stop]).long()  # [e, N]
        return {"class_text": bank[classes.to(bank.device)]}  # [e, N, D]

    def video_text_logits(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Frames ``[..., T, D]`` and text ``[C, D]`` -> ``s * cos(mean_t f, text)`` ``[..., C]``
        with the released cosine's epsilon (CL-2)."""
        video = features.mean(dim=-2)  # [..., D]
        cosine = cosine_with_epsilon(video[..., None, :], text, self.cosine_epsilon)
        return self.scale * cosine[..., 0, :]

    # --- head -----------------------------------------------------------------------------

    def encode(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        # features [B, T, D] -> raw frames (support path, text fusion) and the query path
        # through Omega with the frame tokens alone
        return {"frames": features, "modulated": self.omega(features)}

    def video_context(self, episodes) -> dict[str, torch.Tensor]:
        # each test video's own class text [V, D]: a support video's modulation by Omega
        # depends on nothing else (with merge_before off), so it is computed once per video
        # instead of in every episode that reads the video
        bank = self.text_features(episodes.class_names)  # [C_split, D]
        classes = torch.from_numpy(episodes.video_classes()).clamp(min=0)  # [V]
        return {"own_text": bank[classes.to(bank.device)]}

    def encode_for_test(self, features, shots, own_text=None) -> dict[str, torch.Tensor]:
        encoded = self.encode(features)
        if not self.merge_before and own_text is not None:
            encoded["support_modulated"] = self.modulate_support(features, own_text)  # [B, T, D]
        return encoded

    def modulate_support(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Support ``[B, T, D]`` with its class text ``[B, D]`` -> the first T outputs of Omega
        over ``[f_1..f_T, text]`` ``[B, T, D]`` (CL-1)."""
        tokens = torch.cat([frames, text[:, None].to(frames)], dim=1)  # [B, T+1, D]
        return self.omega(tokens)[:, : frames.shape[1]]

    def compare(self, support, support_labels, query, class_text: torch.Tensor | None = None):
        # support/query: encode() dicts with rows [E, S] / [E, Q]; class_text [E, N, D]
        if class_text is None:
            raise ValueError("clip_fsar compares with the text of each episode's classes")
        n_way = n_way_of(support_labels)
        frames = support["frames"]  # [E, S, T, D]
        if self.merge_before:
            merged = one_hot_mean(support_labels, frames, n_way)  # [E, N, T, D]
            prototypes = self.modulate_support(merged.flatten(0, 1), class_text.flatten(0, 1))
            prototypes = prototypes.unflatten(0, merged.shape[:2])  # [E, N, T, D]
        elif "support_modulated" in support:  # computed per video by encode_for_test
            prototypes = one_hot_mean(support_labels, support["support_modulated"], n_way)
        else:
            shot_text = torch.gather(  # [E, S, D]: each shot's class text
                class_text, 1, support_labels[..., None].expand(-1, -1, class_text.shape[-1])
            )
            modulated = self.modulate_support(frames.flatten(0, 1), shot_text.flatten(0, 1))
            modulated = modulated.unflatten(0, frames.shape[:2])  # [E, S, T, D]
            prototypes = one_hot_mean(support_labels, modulated, n_way)  # [E, N, T, D]
        distances = self.distances(query["modulated"], prototypes)  # [E, Q, N]
        if self.fusion and not self.training:
            return self.fused_scores(query["frames"], class_text, distances)
        return -distances

    def distances(self, query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """``query [E, Q, T, D]``, ``prototypes [E, N, T, D]`` -> OTAM distances ``[E, Q, N]``
        on the released cosine distance, both directions summed (CL-3)."""
        (queries, frames), (classes, proto_frames) = query.shape[1:3], prototypes.shape[1:3]
        cosine = cosine_with_epsilon(  # [E, Q*Tq, N*Tp]: every query frame with every class frame
            query.flatten(1, 2), prototypes.flatten(1, 2), self.cosine_epsilon
        )
        cosine = cosine.unflatten(2, (classes, proto_frames)).unflatten(1, (queries, frames))
        cosine = cosine.permute(0, 1, 3, 2, 4)  # [E, Q, N, Tq, Tp]
        return otam_directions(
            1.0 - cosine,
            self.direction,
            lbda=self.lbda,
            first_col_vertical=True,
            last_col_vertical=True,
        )

    def fused_scores(self, query_frames, class_text, distances) -> torch.Tensor:
        """log(p_text^w * p_vis^(1-w)) ``[E, Q, N]``: the test-time fusion, whose text term is
        the plain cosine (the released code normalises both sides here, without epsilon)."""
        text = F.normalize(class_text, dim=-1, eps=EPS)  # [E, N, D]
        video = F.normalize(query_frames.mean(dim=-2), dim=-1, eps=EPS)  # [E, Q, D]
        log_p_text = F.log_softmax(self.scale * video @ text.transpose(1, 2), dim=-1)
        log_p_vis = F.log_softmax((self.fusion_offset - distances) / self.fusion_offset, dim=-1)
        weight = self.fusion_text_weight
        return weight * log_p_text + (1.0 - weight) * log_p_vis

    # --- training episodes ----------------------------------------------------------------

    def class_bank(self, class_ids, split_classes) -> tuple[torch.Tensor, torch.Tensor]:
        """A training episode's classes: the text bank of its split ``[C, D]`` and
        ``class_ids [N]`` (indices into ``split_classes``, the split's labels) on its device."""
        if class_ids is None or split_classes is None:
            raise ValueError("clip_fsar needs each episode's class_ids and split_classes")
        bank = self.text_features(tuple(split_classes))  # [C, D]
        return bank, class_ids.to(bank.device).long()

    def forward_context(self, class_ids=None, split_classes=None) -> dict:
        bank, class_ids = self.class_bank(class_ids, split_classes)
        return {"class_text": bank[class_ids]}  # [N, D]

    def auxiliary_losses(
        self, support, support_labels, query, query_labels, class_ids=None, split_classes=None
    ) -> dict:
        """The video-text matching loss over every base class, weighted by lambda_cls."""
        bank, class_ids = self.class_bank(class_ids, split_classes)
        videos = torch.cat([support, query])  # [S+Q, T, D]
        base = class_ids[torch.cat([support_labels, query_labels]).to(class_ids.device)]
        class_logits = self.video_text_logits(videos, bank)  # [S+Q, C]
        return {"loss_text": self.text_loss_weight * F.cross_entropy(class_logits, base)}
