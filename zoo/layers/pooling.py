"""Spatial pyramid pooling (He et al., "Spatial Pyramid Pooling in Deep Convolutional
Networks for Visual Recognition", 2014): a fixed-length vector from a feature map of
any size, so one classifier serves every input resolution. Fast R-CNN's RoI pooling is
its one-level case on a region; PSPNet pools the same pyramid for context."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers import Example, _randn
from zoo.registry import buildable


@buildable
class SpatialPyramidPooling(nn.Module):
    """Max-pool a (B, C, h, w) map into an n x n grid for each pyramid level n and
    concatenate: (B, C * sum(n**2)). Levels (1, 2, 4) give 21 cells per channel
    (SPP-net used 1, 2, 3, 6 on 13x13 conv5 maps)."""

    def __init__(self, levels: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        self.levels = tuple(int(n) for n in levels)
        if not self.levels or min(self.levels) < 1:
            raise ValueError(f"spp_levels must be positive integers, got {list(levels)}")
        self.cells = sum(n * n for n in self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Adaptive pooling places bin edges at floor/ceil of i*h/n, the paper's window
        # ceil(h/n) and stride floor(h/n) without its leftover border; a level larger
        # than the map repeats cells rather than failing.
        return torch.cat([F.adaptive_max_pool2d(x, n).flatten(1) for n in self.levels], dim=1)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"

    @classmethod
    def example(cls) -> Example:
        return Example(cls((1, 2)), (_randn(2, 4, 7, 5),), (2, 4 * 5))


@buildable
class PyramidPoolingModule(nn.Module):
    """PSPNet's pyramid pooling module (Zhao et al., "Pyramid Scene Parsing Network",
    CVPR 2017): average-pool a (B, C, h, w) map into n x n bins for each n in ``bins``
    (1, 2, 3, 6 in the paper), reduce each to ``C / len(bins)`` channels with a 1x1
    conv-BN-ReLU, upsample bilinearly back to (h, w) and concatenate with the input:
    (B, C + len(bins) * (C // len(bins)), h, w)."""

    def __init__(self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6),
                 reduction_channels: int | None = None) -> None:
        super().__init__()
        self.bins = tuple(int(n) for n in bins)
        if not self.bins or min(self.bins) < 1:
            raise ValueError(f"pyramid bins must be positive integers, got {list(bins)}")
        r = reduction_channels or max(1, in_channels // len(self.bins))
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, r, 1, bias=False), nn.BatchNorm2d(r), nn.ReLU(inplace=True))
            for _ in self.bins)
        self.out_channels = in_channels + r * len(self.bins)

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pyramid before upsampling: (B, r, n, n) for each n in ``bins``."""
        return [stage(F.adaptive_avg_pool2d(x, n)) for n, stage in zip(self.bins, self.stages)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        ups = [F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in self.pooled(x)]
        return torch.cat([x, *ups], dim=1)

    def extra_repr(self) -> str:
        return f"bins={self.bins}"

    @classmethod
    def example(cls) -> Example:
        return Example(cls(8, (1, 2, 3, 6)), (_randn(2, 8, 7, 6),), (2, 8 + 4 * 2, 7, 6))
