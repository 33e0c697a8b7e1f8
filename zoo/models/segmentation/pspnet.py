"""PSPNet (Zhao, Shi, Qi, Wang, Jia, "Pyramid Scene Parsing Network", CVPR 2017): a
dilated ResNet keeps the feature map at 1/8 of the input (the last two stages trade
their stride for dilation 2 and 4, so their receptive field still grows), the pyramid
pooling module (``zoo.layers.pooling.PyramidPoolingModule``, bins 1, 2, 3, 6) adds
context pooled over the whole image, the half image, ... and a 3x3 convolution and a
1x1 classifier give logits upsampled bilinearly to the input. During training an
auxiliary classifier on the third stage's output adds ``aux_weight`` (0.4 in the paper)
times its loss, a deep supervision that helps the early stages learn.

The backbone is ResNet-18/34-shaped with BasicBlocks (torchvision's BasicBlock refuses
dilation, so the blocks are written here), the paper's three-convolution stem, and
``widths`` narrow enough for a CPU; the paper used ResNet-50/101 with Bottlenecks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError
from zoo.layers.conv import ConvNormAct
from zoo.layers.pooling import PyramidPoolingModule
from zoo.models.segmentation.base import SemanticSegmenter


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with a shortcut, with stride or dilation."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride=stride, dilation=dilation)
        self.conv2 = ConvNormAct(cout, cout, 3, dilation=dilation, act=None)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else ConvNormAct(cin, cout, 1, stride=stride, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class DilatedResNet(nn.Module):
    """Stem (three 3x3 convs, the first with stride 2, then a 3x3/2 max pool: stride 4),
    four stages of ``blocks`` BasicBlocks at ``widths``; stage 2 halves the map, stages 3
    and 4 keep it and dilate by 2 and 4 (``output_stride`` 8) or stage 3 halves and stage
    4 dilates by 2 (16). Returns the outputs of stages 3 and 4."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256),
                 blocks: Sequence[int] = (2, 2, 2, 2), output_stride: int = 8) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise UserError(f"model.output_stride must be 8 or 16, got {output_stride}")
        w0 = widths[0]
        self.stem = nn.Sequential(ConvNormAct(in_channels, w0 // 2, 3, stride=2),
                                  ConvNormAct(w0 // 2, w0 // 2, 3), ConvNormAct(w0 // 2, w0, 3),
                                  nn.MaxPool2d(3, 2, 1))
        plan = [(1, 1), (2, 1), (1, 2), (1, 4)] if output_stride == 8 else [(1, 1), (2, 1), (2, 1), (1, 2)]
        stages, cin = [], w0
        for w, n, (s, d) in zip(widths, blocks, plan):
            stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else w, w, s if j == 0 else 1, d)
                                          for j in range(n)]))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.layer2(self.layer1(self.stem(x)))
        c3 = self.layer3(x)
        return c3, self.layer4(c3)


class PSPNet(SemanticSegmenter):
    """Dilated ResNet + pyramid pooling (``bins``) + auxiliary head on stage 3."""

    def __init__(self, *, num_classes: int, in_channels: int = 3,
                 widths: Sequence[int] = (32, 64, 128, 256), blocks: Sequence[int] = (2, 2, 2, 2),
                 output_stride: int = 8, bins: Sequence[int] = (1, 2, 3, 6), head_width: int = 128,
                 aux_weight: float = 0.4, dropout: float = 0.1, **loss: Any) -> None:
        super().__init__(num_classes=num_classes, **loss)
        if len(widths) != 4 or len(blocks) != 4:
            raise UserError("PSPNet's backbone has four stages: model.widths and model.blocks need 4 values")
        self.backbone = DilatedResNet(in_channels, widths, blocks, output_stride)
        self.ppm = PyramidPoolingModule(widths[3], bins)
        self.head = nn.Sequential(ConvNormAct(self.ppm.out_channels, head_width, 3), nn.Dropout2d(dropout),
                                  nn.Conv2d(head_width, num_classes, 1))
        self.aux_head = nn.Sequential(ConvNormAct(widths[2], head_width // 2, 3), nn.Dropout2d(dropout),
                                      nn.Conv2d(head_width // 2, num_classes, 1))
        self.aux_weight = float(aux_weight)
        self.stride = output_stride

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        size = x.shape[-2:]
        c3, c4 = self.backbone(x)                     # (B, w3, H/8, W/8), (B, w4, H/8, W/8)
        main = F.interpolate(self.head(self.ppm(c4)), size=size, mode="bilinear", align_corners=False)
        if not self.training or self.aux_weight <= 0:
            return main, None
        aux = F.interpolate(self.aux_head(c3), size=size, mode="bilinear", align_corners=False)
        return main, aux
