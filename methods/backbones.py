"""Frame backbones: a 2D network applied to every frame, with one output contract.

``forward(frames [B, 3, H, W] float, normalised) -> maps [B, C, h, w]``; ``out_channels`` is C
and ``mean`` / ``std`` (0-255 scale) say how the harness normalises uint8 frames. Pooled
per-frame features are the spatial mean of the maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmaction.models.backbones import ResNet
from torch import nn

from fsarbench.registry import MODELS

_RESNET_WIDTH = {18: 64, 34: 64, 50: 256, 101: 256, 152: 256}


@MODELS.register_module()
class FrameResNet(nn.Module):
    """MMAction2's 2D ResNet on each frame, truncated to ``num_stages`` stages.

    Weights start from PyTorch's default initialisation under the run's seed (MMAction2's own
    ``init_weights`` is not called: outside a Runner it logs one block per parameter);
    pretrained ImageNet weights come from a file the user names.
    """

    def __init__(
        self,
        depth: int = 50,
        num_stages: int = 4,
        mean: Sequence[float] = (123.675, 116.28, 103.53),
        std: Sequence[float] = (58.395, 57.12, 57.375),
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
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.resnet(frames)  # [B, C, h, w]
