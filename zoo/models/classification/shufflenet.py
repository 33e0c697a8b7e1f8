"""ShuffleNetV2 from torchvision's builders, with a stem for small inputs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torchvision
from torch import nn

from zoo.errors import UserError, choices
from zoo.models.classification.base import ConvClassifier, make_pool, replace_conv

BUILDERS = {0.5: torchvision.models.shufflenet_v2_x0_5, 1.0: torchvision.models.shufflenet_v2_x1_0,
            1.5: torchvision.models.shufflenet_v2_x1_5, 2.0: torchvision.models.shufflenet_v2_x2_0}


class ShuffleNetV2(ConvClassifier):
    """ShuffleNet V2 (Ma, Zhang, Zheng & Sun, "ShuffleNet V2: Practical Guidelines for
    Efficient CNN Architecture Design", 2018): units split the channels in two, pass
    one half through 1x1 / 3x3 depthwise / 1x1 convolutions, concatenate and shuffle
    channels so information crosses the halves. ``width`` is the x0.5..x2.0 multiplier.

    ``small_input`` (8-32 px images): the first 3x3 convolution gets stride 1 and the
    max pool is dropped, so the total stride is 8, not 32.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, small_input: bool = False,
                 width: float = 1.0, spp_levels: Sequence[int] | None = None) -> None:
        super().__init__(num_classes)
        if float(width) not in BUILDERS:
            raise UserError(f"model.width={width} is not a built ShuffleNetV2; valid: "
                            f"{choices(map(str, BUILDERS))}")
        net = BUILDERS[float(width)](weights=None, num_classes=num_classes)
        if small_input or in_channels != 3:
            net.conv1[0] = replace_conv(net.conv1[0], in_channels=in_channels,
                                        stride=1 if small_input else None)
        if small_input:
            net.maxpool = nn.Identity()
        self.features = nn.Sequential(OrderedDict(
            (name, getattr(net, name))
            for name in ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")
        ))  # (B, 1024, h, w) at x1.0
        self.pool, cells = make_pool(spp_levels)
        width_out = net.fc.in_features
        self.classifier = net.fc if cells == 1 else nn.Linear(width_out * cells, num_classes)
