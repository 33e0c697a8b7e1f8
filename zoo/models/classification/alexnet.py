"""AlexNet from torchvision's builder, with a stem for small inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torchvision
from torch import nn

from zoo.models.classification.base import (
    ConvClassifier,
    init_he_normal,
    make_pool,
    replace_conv,
    resize_linear_head,
)


class AlexNet(ConvClassifier):
    """AlexNet (Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep
    Convolutional Neural Networks", 2012) in torchvision's single-tower form: five
    convolutions with ReLU and overlapping max pooling, then two dropout-regularised
    fully connected layers of ``hidden`` units.

    ``small_input`` (8-32 px images): the 11x11 stride-4 first convolution becomes
    3x3 stride 1 and the first max pool is dropped, so an 8x8 image still reaches
    the last pool (8 -> 3 -> 1) instead of vanishing; the pooled map is then averaged
    to 1x1 (not 6x6), so the first fully connected layer sees 256 values, not 9216.
    ``he_init`` replaces PyTorch's default initialisation, with which this BatchNorm-free
    net barely learns in the first epochs (see ``init_he_normal``).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, small_input: bool = False,
                 hidden: int = 4096, dropout: float = 0.5, he_init: bool = False,
                 spp_levels: Sequence[int] | None = None) -> None:
        super().__init__(num_classes)
        net = torchvision.models.alexnet(weights=None, num_classes=num_classes, dropout=dropout)
        f = net.features  # [0] conv11/4, [2] pool, [3] conv5, [5] pool, [6..11] conv3 x3, [12] pool
        if small_input:
            f[0] = replace_conv(f[0], in_channels=in_channels, kernel_size=3, stride=1, padding=1)
            f[2] = nn.Identity()  # keeps torchvision's layer indices
        elif in_channels != 3:
            f[0] = replace_conv(f[0], in_channels=in_channels)
        self.features = f  # (B, 256, h, w)
        self.pool, cells = make_pool(spp_levels, output_size=1 if small_input else 6)
        if cells == 36 and hidden == 4096:
            self.classifier = net.classifier
        else:
            self.classifier = resize_linear_head(net.classifier, 256 * cells, hidden)
        if he_init:
            init_he_normal(self)
