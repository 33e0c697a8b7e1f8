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
