"""U-Net (Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015): a contracting path of two-convolution blocks and 2x2 max
pools, and an expanding path that upsamples (2x2 transposed convolution, or bilinear
interpolation + 1x1 convolution), concatenates the contracting path's map of the same
size and convolves twice. ``depth`` poolings, ``width`` channels at the top, doubling
per level (the paper: depth 4, width 64). Convolutions are padded ("same") with batch
norm, so the output has the input's size instead of the paper's valid-convolution
shrinkage; ``mirror_pad`` > 0 predicts as the paper's overlap-tile strategy does
(reflect-pad, predict, crop back; ``mirror_tile`` to cut a large image into tiles).
The edge-weighted loss of the paper is ``model.loss=edge_weighted_ce``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError
from zoo.layers.conv import ConvNormAct
from zoo.models.segmentation.base import SemanticSegmenter, mirror_pad_predict


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(cin, cout, 3), ConvNormAct(cout, cout, 3))


class Up(nn.Module):
    """x2 upsampling of the deeper map to ``cout`` channels, concatenation with the skip,
    two convolutions: (B, cin, h, w), (B, cout, 2h, 2w) -> (B, cout, 2h, 2w)."""

    def __init__(self, cin: int, cout: int, mode: str) -> None:
        super().__init__()
        if mode == "transposed":
            self.up: nn.Module = nn.ConvTranspose2d(cin, cout, 2, 2)
        else:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    nn.Conv2d(cin, cout, 1))
        self.conv = double_conv(2 * cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], 1))


class UNet(SemanticSegmenter):
    """U-Net with ``depth`` levels below the top, ``width`` channels at the top and
    ``upsampling`` ``transposed`` (the paper's up-convolution) or ``bilinear``."""

    def __init__(self, *, num_classes: int, in_channels: int = 3, depth: int = 4, width: int = 16,
                 upsampling: str = "transposed", mirror_pad: int = 0, mirror_tile: int | None = None,
                 **loss: Any) -> None:
        super().__init__(num_classes=num_classes, **loss)
        if upsampling not in ("transposed", "bilinear"):
            raise UserError(f"model.upsampling={upsampling} is not one of transposed, bilinear")
        if not 1 <= int(depth) <= 6:
            raise UserError(f"model.depth must be 1..6, got {depth}")
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.inc = double_conv(in_channels, widths[0])
        self.down = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(Up(widths[i + 1], widths[i], upsampling) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.stride = 2 ** depth
        self.mirror_pad, self.mirror_tile = int(mirror_pad), mirror_tile

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        skips = [self.inc(x)]                               # (B, w, H, W)
        for down in self.down:
            skips.append(down(F.max_pool2d(skips[-1], 2)))  # (B, w 2^i, H/2^i, W/2^i)
        x = skips.pop()
        for up in self.up:
            x = up(x, skips.pop())
        return self.head(x), None

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        images = self.images_of(batch)
        if self.mirror_pad <= 0 and self.mirror_tile is None:
            return self(images)
        return mirror_pad_predict(self, images, self.mirror_pad, self.mirror_tile)
