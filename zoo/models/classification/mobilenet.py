"""MobileNetV2 from torchvision's builder, with strides adapted to small inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torchvision
from torch import nn

from zoo.models.classification.base import ConvClassifier, make_pool, replace_conv

# (expansion t, channels c, repeats n, first stride s) per stage: Table 2 of the paper.
INVERTED_RESIDUAL_SETTING = [
    [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
    [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
]


class MobileNetV2(ConvClassifier):
    """MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
    Bottlenecks", 2018): inverted residual blocks (1x1 expansion, 3x3 depthwise
    convolution, linear 1x1 projection) with ReLU6, cheap enough for phones.

    ``small_input`` (8-32 px images): the first convolution and the first stride-2
    stage (24 channels) use stride 1, so the total stride is 8, not 32: an 8x8 image
    ends at 1x1, a 32x32 one at 4x4.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, small_input: bool = False,
                 width_mult: float = 1.0, dropout: float = 0.2,
                 spp_levels: Sequence[int] | None = None) -> None:
        super().__init__(num_classes)
        setting = [list(row) for row in INVERTED_RESIDUAL_SETTING]
        if small_input:
            setting[1][3] = 1
        net = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes,
                                              width_mult=width_mult, dropout=dropout,
                                              inverted_residual_setting=setting)
        stem = net.features[0][0]  # Conv2dNormActivation's conv, 3x3 stride 2
        if small_input or in_channels != 3:
            net.features[0][0] = replace_conv(stem, in_channels=in_channels,
                                              stride=1 if small_input else None)
        self.features = net.features  # (B, 1280, h, w)
        self.pool, cells = make_pool(spp_levels)
        if cells == 1:
            self.classifier = net.classifier  # dropout, linear
        else:
            width = net.last_channel
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width * cells, num_classes))
