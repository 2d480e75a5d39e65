"""Backbones and their one output contract (:class:`ClipBackbone`).

Every backbone takes normalised clips ``[B, T, 3, H, W]`` and gives, per video, features of
``T' = time_steps(T)`` steps: pooled ``[B, T', C]`` or maps ``[B, T', C, h, w]``
(``channels(kind)`` is C; the two kinds may differ in width: CLIP's pooled feature is its
512-d projection, its maps the 768-d patch tokens). ``mean`` / ``std`` (0-255 scale) say how
the harness normalises uint8 frames. Heads ask for one kind and read the width from
``channels``, so any head runs on any backbone that provides the kind it needs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from mmaction.models.backbones import ResNet
from torch import nn

from fsarbench.registry import MODELS

_RESNET_WIDTH = {18: 64, 34: 64, 50: 256, 101: 256, 152: 256}
FEATURE_KINDS = ("pooled", "maps")
# ImageNet's normalisation on the 0-255 scale: ResNets' and VideoMAE's
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class ClipBackbone(nn.Module):
    """The contract every backbone keeps (see the module docstring).

    Subclasses call ``set_normalisation`` and implement ``forward``,
    ``channels`` and, when they change the number of steps, ``time_steps``.
    """

    kinds: tuple[str, ...] = FEATURE_KINDS  # the feature kinds this backbone provides

    def channels(self, kind: str) -> int:
        raise NotImplementedError

    def time_steps(self, frames: int) -> int:
        """Steps out for ``frames`` in: one per frame for frame backbones."""
        return frames

    def set_normalisation(self, mean, std) -> None:
        """``mean`` / ``std`` per channel on the 0-255 scale, as buffers ``[1, 3, 1, 1]`` (they
        follow the module's device; not weights, so not in its state dict)."""
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ValueError(
                f"{type(self).__name__} provides {' and '.join(self.kinds)} features, not {kind}"
            )

    def forward(self, pixels: torch.Tensor, kind: str = "pooled") -> torch.Tensor:
        raise NotImplementedError

    def pool_maps(self, maps: torch.Tensor) -> torch.Tensor | None:
        """The pooled features computed from this backbone's maps ``[B, T, C, h, w]``, bit for
        bit what ``forward(..., "pooled")`` returns, or None where pooled features are not a
        function of the maps (CLIP's projected class token). The feature store uses it to
        write both kinds from one embedding pass."""
        return None


@MODELS.register_module()
class FrameResNet(ClipBackbone):
    """MMAction2's 2D ResNet on each frame, truncated to ``num_stages`` stages.

    Weights start from PyTorch's default initialisation under the run's seed (MMAction2's own
    ``init_weights`` is not called: outside a Runner it logs one block per parameter);
    pretrained ImageNet weights come from a file the user names.
    """

    def __init__(
        self,
        depth: int = 50,
        num_stages: int = 4,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        self.resnet = ResNet(
            depth=depth,
            pretrained=None,
            num_stages=num_stages,
            out_indices=(num_stages - 1,),
            strides=(1, 2, 2, 2)[:num_stages],
            dilations=(1,) * num_stages,
            norm_eval=norm_eval,
        )
        self.out_channels = _RESNET_WIDTH[depth] * 2 ** (num_stages - 1)
        self.set_normalisation(mean, std)

    def channels(self, kind: str) -> int:
        self.check_kind(kind)
        return self.out_channels

    def forward(self, pixels: torch.Tensor, kind: str = "pooled") -> torch.Tensor:
        """``[B, T, 3, H, W]`` -> ``[B, T, C]`` (spatial mean) or maps ``[B, T, C, h, w]``."""
        self.check_kind(kind)
        maps = self.resnet(pixels.flatten(0, 1)).unflatten(0, pixels.shape[:2])  # [B,T,C,h,w]
        return self.pool_maps(maps) if kind == "pooled" else maps

    def pool_maps(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.mean(dim=(-2, -1))  # [B, T, C]: the spatial mean

    @staticmethod
    def adapt_state_dict(state: dict) -> tuple[dict, list[str]]:
        """ResNet weights in the common layouts -> this module's keys, and the keys dropped.

        Accepted: this module's own (``resnet.conv1.conv.weight``); MMAction2's ResNet
        (``conv1.conv.weight``, as in TSN checkpoints under ``backbone.``); torchvision's and
        MMPretrain's (``conv1.weight``, ``bn1.*``, ``layer1.0.bn2.*``,
        ``layer1.0.downsample.0/1.*``), the ImageNet checkpoints the FSAR papers start from.
        A ``state_dict`` or ``model`` wrapper and ``module.``, ``backbone.`` or ``model.``
        prefixes are removed; classifier weights (``fc.*``, ``head.*``, ``cls_head.*``) are
        dropped. Shapes are left to the caller's check.
        """
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
        state = strip_common_prefix(state, ("module.", "model."))
        dropped = sorted(k for k in state if k.split(".")[0] in ("fc", "head", "cls_head"))
        state = {k: v for k, v in state.items() if k not in dropped}
        state = strip_common_prefix(state, ("backbone.", "resnet."))
        return {"resnet." + _mmaction_resnet_key(k): v for k, v in state.items()}, dropped


def strip_common_prefix(state: dict, prefixes: tuple[str, ...]) -> dict:
    for prefix in prefixes:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


# torchvision / MMPretrain names -> MMAction2's ConvModule names (conv and its norm together)
_TORCHVISION_TO_MMACTION = (
    (re.compile(r"^conv1\.weight$"), "conv1.conv.weight"),
    (re.compile(r"^bn1\.(\w+)$"), r"conv1.bn.\1"),
    (re.compile(r"^(layer\d+\.\d+)\.conv(\d)\.weight$"), r"\1.conv\2.conv.weight"),
    (re.compile(r"^(layer\d+\.\d+)\.bn(\d)\.(\w+)$"), r"\1.conv\2.bn.\3"),
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.0\.weight$"), r"\1.downsample.conv.weight"),
    (re.compile(r"^(layer\d+\.\d+)\.downsample\.1\.(\w+)$"), r"\1.downsample.bn.\2"),
)


def _mmaction_resnet_key(key: str) -> str:
    for pattern, replacement in _TORCHVISION_TO_MMACTION:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return key  # already MMAction2's layout (or unknown: the caller's check names it)
