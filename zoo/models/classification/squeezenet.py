"""SqueezeNet 1.1 from torchvision's builder, with a stem for small inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torchvision
from torch import nn

from zoo.models.classification.base import ConvClassifier, init_he_normal, make_pool, replace_conv


class SqueezeNet(ConvClassifier):
    """SqueezeNet (Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer
    parameters and <0.5MB model size", 2016), version 1.1: Fire modules (a 1x1
    "squeeze" convolution feeding parallel 1x1 and 3x3 "expand" convolutions) and no
    fully connected layer: a 1x1 convolution gives per-class maps that are averaged.

    ``small_input`` (8-32 px images): the first 3x3 convolution gets stride 1 and
    padding 1 and the first max pool is dropped, so an 8x8 image ends at 2x2. With
    ``spp_levels`` the Fire features are pooled by the pyramid and a dropout + linear
    layer replaces the per-class convolution. ``he_init`` re-initialises every layer,
    the class convolution included, so its ReLU-clipped logits do not all die at 0
    (see ``init_he_normal``).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, small_input: bool = False,
                 dropout: float = 0.5, he_init: bool = False,
                 spp_levels: Sequence[int] | None = None) -> None:
        super().__init__(num_classes)
        net = torchvision.models.squeezenet1_1(weights=None, num_classes=num_classes,
                                               dropout=dropout)
        f = net.features  # [0] conv3/2, [2] pool, Fire x2, pool, Fire x2, pool, Fire x4
        if small_input:
            f[0] = replace_conv(f[0], in_channels=in_channels, stride=1, padding=1)
            f[2] = nn.Identity()  # keeps torchvision's layer indices
        elif in_channels != 3:
            f[0] = replace_conv(f[0], in_channels=in_channels)
        if spp_levels:
            self.features = f  # (B, 512, h, w)
            self.pool, cells = make_pool(spp_levels)
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(512 * cells, num_classes))
        else:
            # torchvision's head: dropout, 1x1 conv to class maps, ReLU, global average.
            dropout_layer, final_conv, relu, _ = net.classifier
            self.features = nn.Sequential(f, dropout_layer, final_conv, relu)  # (B, C, h, w)
            self.pool, _ = make_pool(None)
            self.classifier = nn.Identity()
        if he_init:
            init_he_normal(self)
