"""LeNet-5, written out layer by layer."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from zoo.errors import UserError, choices
from zoo.models.classification.base import ConvClassifier, make_pool

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class LeNet5(ConvClassifier):
    """LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to
    document recognition", 1998) for 32x32 inputs:

    C1 conv 5x5, 6 maps (28x28) -> S2 pool 2 (14x14) -> C3 conv 5x5, 16 maps (10x10)
    -> S4 pool 2 (5x5) -> C5 conv 5x5, 120 maps (1x1) -> F6 84 units -> 10 outputs.

    28x28 inputs (MNIST) are zero-padded by 2 in C1, the usual modern reading.
    Simplifications: every C3 map sees all S2 maps (the paper used a sparse table),
    subsampling is plain pooling without trainable coefficients, and the output is a
    linear layer with cross-entropy instead of RBF units.
    ``spp_levels`` replaces C5 by a spatial pyramid over S4 and a linear layer to 120.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 1, image_size: int = 32,
                 activation: str = "tanh", pooling: str = "avg",
                 spp_levels: Sequence[int] | None = None) -> None:
        super().__init__(num_classes)
        if activation not in ACTIVATIONS or pooling not in POOLS:
            raise UserError(f"LeNet5 activation must be one of {choices(ACTIVATIONS)} and "
                            f"pooling one of {choices(POOLS)}")
        if image_size not in (28, 32):
            raise UserError(f"LeNet-5 takes 28x28 or 32x32 inputs, got data.image_size="
                            f"{image_size}; set data.image_size=32 to resize")
        act, pool = ACTIVATIONS[activation], POOLS[pooling]
        pad = (32 - image_size) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), act(),  # C1: (B, 6, 28, 28)
            pool(2),                                           # S2: (B, 6, 14, 14)
            nn.Conv2d(6, 16, 5), act(),                        # C3: (B, 16, 10, 10)
            pool(2),                                           # S4: (B, 16, 5, 5)
        )
        if spp_levels:
            spp, cells = make_pool(spp_levels)
            self.pool = nn.Sequential(spp, nn.Linear(16 * cells, 120), act())
        else:
            # C5 is a 5x5 convolution over the 5x5 S4 maps, i.e. fully connected: (B, 120)
            self.pool = nn.Sequential(nn.Conv2d(16, 120, 5), act(), nn.Flatten(1))
        self.classifier = nn.Sequential(nn.Linear(120, 84), act(),  # F6
                                        nn.Linear(84, num_classes))
