"""ResNet-18/34/50 from torchvision's builders, with a stem for small inputs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torchvision
from torch import nn

from zoo.errors import UserError, choices
from zoo.models.classification.base import ConvClassifier, make_pool, replace_conv

BUILDERS = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34,
            50: torchvision.models.resnet50}


class ResNet(ConvClassifier):
    """ResNet (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition",
    2016): stages of residual blocks ``relu(x + F(x))`` whose identity shortcuts let
    gradients reach early layers of very deep nets. Depth 18/34 use basic blocks
    (two 3x3 convs), 50 bottleneck blocks (1x1-3x3-1x1, 4x expansion).

    ``small_input`` (8-32 px images): the 7x7 stride-2 convolution and 3x3 max pool
    of the stem become one 3x3 stride-1 convolution, as in the paper's CIFAR nets, so
    the total stride is 8: an 8x8 image ends at 1x1, a 32x32 one at 4x4.
    """

    def __init__(self, *, num_classes: int, depth: int = 18, in_channels: int = 3,
                 small_input: bool = False, zero_init_residual: bool = False,
                 spp_levels: Sequence[int] | None = None) -> None:
        super().__init__(num_classes)
        if depth not in BUILDERS:
            raise UserError(f"model.depth={depth} is not a built ResNet; valid: "
                            f"{choices(map(str, BUILDERS))}")
        net = BUILDERS[depth](weights=None, num_classes=num_classes,
                              zero_init_residual=zero_init_residual)
        if small_input:
            net.conv1 = replace_conv(net.conv1, in_channels=in_channels, kernel_size=3,
                                     stride=1, padding=1)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = replace_conv(net.conv1, in_channels=in_channels)
        self.features = nn.Sequential(OrderedDict(
            (name, getattr(net, name))
            for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        ))  # (B, 512 or 2048, h, w)
        self.pool, cells = make_pool(spp_levels)
        width = net.fc.in_features
        self.classifier = net.fc if cells == 1 else nn.Linear(width * cells, num_classes)
