"""The multilayer perceptron."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.models.classification.base import Classifier, check_flat_input


class MLP(Classifier):
    """A multilayer perceptron (Rumelhart, Hinton & Williams, 1986): Linear-ReLU
    blocks with dropout (Srivastava et al., 2014), then a linear classifier.

    ReLU keeps gradients from vanishing through depth; dropout zeroes a random
    ``dropout`` share of hidden units while training and is off in eval mode, when
    ``nn.Dropout`` is the identity. Inputs are flattened, so images work too.
    """

    def __init__(self, *, in_features: int, num_classes: int, hidden: Sequence[int] = (64, 64),
                 dropout: float = 0.0) -> None:
        super().__init__(num_classes)
        layers: list[nn.Module] = []
        width = int(in_features)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True), nn.Dropout(float(dropout))]
            width = int(h)
        layers.append(nn.Linear(width, int(num_classes)))
        self.net = nn.Sequential(*layers)
        self.in_features = int(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (B, F) -> (B, C)

    def on_train_start(self, data: Any, run_dir: str | None = None) -> None:
        check_flat_input(self.in_features, data)
