"""VGG-16 built from torchvision's VGG layer builder, with pooling adapted to small inputs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from zoo.models.classification.base import ConvClassifier, make_pool, replace_conv


class VGG16(ConvClassifier):
    """VGG-16 (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
    Image Recognition", 2015), configuration D: thirteen 3x3 convolutions in five
    blocks (64, 128, 256, 512, 512 channels) separated by 2x2 max pools, then three
    fully connected layers with dropout. ``batch_norm`` adds BatchNorm after each
    convolution (torchvision's ``vgg16_bn``; Ioffe & Szegedy 2015), which trains from
    scratch without the paper's staged initialisation from shallower nets.

    The convolutions come from torchvision's own ``make_layers(cfgs["D"])``, initialised
    as its ``VGG`` class does; the classifier is built here in torchvision's layout so
    a small head does not first allocate the 25088 x 4096 one (100 M weights).

    ``small_input`` (8-32 px images): the last two max pools are dropped (total
    stride 32 -> 8, so 8x8 inputs end at 1x1 rather than vanishing) and the map is
    averaged to 1x1 (not 7x7): the first fully connected layer sees 512 values.
    Dropping the last pools rather than the first keeps the cost of the wide early
    layers as in the original (dropping the first two costs about 9x more at 8x8).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 3, batch_norm: bool = True,
                 small_input: bool = False, hidden: int = 4096, dropout: float = 0.5,
                 spp_levels: Sequence[int] | None = None) -> None:
        super().__init__(num_classes)
        f = make_layers(cfgs["D"], batch_norm=batch_norm)
        if in_channels != 3:
            f[0] = replace_conv(f[0], in_channels=in_channels)
        if small_input:
            pools = [i for i, m in enumerate(f) if isinstance(m, nn.MaxPool2d)]
            for i in pools[-2:]:
                f[i] = nn.Identity()  # keeps torchvision's layer indices
        self.features = f  # (B, 512, h, w)
        self.pool, cells = make_pool(spp_levels, output_size=1 if small_input else 7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * cells, hidden), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():  # torchvision VGG's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
