"""VGG-16 from torchvision's builder, with pooling adapted to small inputs."""

from __future__ import annotations

from typing import Sequence

import torchvision
from torch import nn

from zoo.models.classification.base import ConvClassifier, make_pool, replace_conv, resize_linear_head


class VGG16(ConvClassifier):
    """VGG-16 (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
    Image Recognition", 2015), configuration D: thirteen 3x3 convolutions in five
    blocks (64, 128, 256, 512, 512 channels) separated by 2x2 max pools, then three
    fully connected layers. ``batch_norm`` uses torchvision's ``vgg16_bn`` (BatchNorm
    after each convolution, Ioffe & Szegedy 2015), which trains from scratch without
    the paper's staged initialisation from shallower nets.

    ``small_input`` (8-32 px images): the last two max pools are dropped (total
    stride 32 -> 8, so 8x8 inputs end at 1x1 rather than vanishing) and the pooled map
    is averaged to 1x1 (not 7x7): the first fully connected layer sees 512 values.
    Dropping the last pools rather than the first keeps the cost of the wide early
    layers as in the original (dropping the first two costs about 9x more at 8x8).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, batch_norm: bool = True,
                 small_input: bool = False, hidden: int = 4096, dropout: float = 0.5,
                 spp_levels: Sequence[int] | None = None) -> None:
        super().__init__(num_classes)
        builder = torchvision.models.vgg16_bn if batch_norm else torchvision.models.vgg16
        net = builder(weights=None, num_classes=num_classes, dropout=dropout)
        f = net.features
        if in_channels != 3:
            f[0] = replace_conv(f[0], in_channels=in_channels)
        if small_input:
            pools = [i for i, m in enumerate(f) if isinstance(m, nn.MaxPool2d)]
            for i in pools[-2:]:
                f[i] = nn.Identity()  # keeps torchvision's layer indices
        self.features = f  # (B, 512, h, w)
        self.pool, cells = make_pool(spp_levels, output_size=1 if small_input else 7)
        if cells == 49 and hidden == 4096:
            self.classifier = net.classifier
        else:
            self.classifier = resize_linear_head(net.classifier, 512 * cells, hidden)
