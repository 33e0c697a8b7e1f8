"""What every classifier shares: cross-entropy training and logits out (its evaluator,
pictures and ``predict.py`` mode are the classification task's, ``zoo.tasks.classification``).

A subclass only defines ``forward(x) -> (B, C) logits`` (or (B, 1) for a binary
sigmoid model). ``ConvClassifier`` adds the usual CNN shape ``features -> pool ->
classifier`` so a spatial-pyramid-pooling head can replace the global pooling of any
convolutional network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.batches import inputs_of, labels_of
from zoo.errors import UserError
from zoo.layers.pooling import SpatialPyramidPooling
from zoo.models.base import ZooModel


class Classifier(ZooModel):
    """Softmax (or, with one output, sigmoid) classification with cross-entropy loss,
    the maximum-likelihood objective for a categorical (Bernoulli) label. Batches are
    ``zoo.data.batches.LabelledBatch`` (inputs, labels)."""

    task = "classification"

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:  # binary: one logit, P(y=1) = sigmoid(logit)
            return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
        return F.cross_entropy(logits, labels)

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        x, y = inputs_of(batch), labels_of(batch)
        logits = self(x)
        with torch.no_grad():
            hard = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
            acc = (hard == y).float().mean()
        return {"loss_cls": self.loss(logits, y), "log_acc": acc}

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self(inputs_of(batch))


def check_flat_input(in_features: int, data: Any) -> None:
    """Refuse, before training, data whose samples do not flatten to ``in_features``
    values (e.g. digits resized by data.image_size while data.num_features kept 64)."""
    found = data.meta.get("num_features")
    if found is not None and int(found) != int(in_features):
        raise UserError(f"the model takes {in_features} input features but each sample of "
                        f"the data has {found}; set data.num_features={found}")


def make_pool(spp_levels: Sequence[int] | None, output_size: int = 1) -> tuple[nn.Module, int]:
    """The pooling between a CNN's features and its classifier, and how many values per
    channel it yields: adaptive average pooling to ``output_size`` squared cells, or a
    spatial pyramid (He et al., 2014) with ``sum(level**2)`` cells."""
    if spp_levels:
        spp = SpatialPyramidPooling(spp_levels)
        return spp, spp.cells
    return nn.Sequential(nn.AdaptiveAvgPool2d(output_size), nn.Flatten(1)), output_size**2


class ConvClassifier(Classifier):
    """``classifier(pool(features(x)))``: features (B, C, h, w) -> pooled (B, C * cells)
    -> logits (B, num_classes). Subclasses set the three modules."""

    features: nn.Module
    pool: nn.Module
    classifier: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def replace_conv(conv: nn.Conv2d, *, in_channels: int | None = None, kernel_size: int | None = None,
                 stride: int | None = None, padding: int | None = None) -> nn.Conv2d:
    """A freshly initialised copy of ``conv`` with some geometry changed: how every
    torchvision network gets grey input (in_channels=1) or a small-input stem."""
    k = kernel_size if kernel_size is not None else conv.kernel_size
    new = nn.Conv2d(in_channels if in_channels is not None else conv.in_channels,
                    conv.out_channels, k,
                    stride=stride if stride is not None else conv.stride,
                    padding=padding if padding is not None else conv.padding,
                    bias=conv.bias is not None)
    # Same initialisation torchvision's ResNet/MobileNet/ShuffleNet use for convs.
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def init_he_normal(module: nn.Module) -> None:
    """Re-initialise every convolution and linear layer with He et al.'s (2015) normal
    init for ReLU nets (std sqrt(2 / fan_in)) and zero biases.

    For networks without BatchNorm trained from scratch: PyTorch's default init has a
    sixth of that variance, so in AlexNet the signal shrinks layer after layer and
    training stalls for epochs; SqueezeNet's tiny (std 0.01) class convolution feeds a
    ReLU, and its logits can all die at 0 (the loss stays at ln C).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def resize_linear_head(head: nn.Sequential, in_features: int, hidden: int) -> nn.Sequential:
    """AlexNet/VGG's classifier (Linear, ReLU, Dropout, ...) with a new input width
    (the pooled features changed) and hidden width, fresh weights, same layer order."""
    idx = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
    for j, i in enumerate(idx):
        last = j == len(idx) - 1
        head[i] = nn.Linear(in_features if j == 0 else hidden,
                            head[i].out_features if last else hidden)
    return head
