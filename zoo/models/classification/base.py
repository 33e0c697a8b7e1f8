"""What every classifier shares: cross-entropy training, logits out, the classification
evaluator, a picture of predictions and a command-line predictor.

A subclass only defines ``forward(x) -> (B, C) logits`` (or (B, 1) for a binary
sigmoid model). ``ConvClassifier`` adds the usual CNN shape ``features -> pool ->
classifier`` so a spatial-pyramid-pooling head can replace the global pooling of any
convolutional network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError
from zoo.layers.pooling import SpatialPyramidPooling
from zoo.metrics.classification import ClassificationEvaluator, batch_labels
from zoo.models.base import ZooModel


def batch_inputs(batch: Any) -> torch.Tensor:
    """The input tensor of a classification batch: ``(x, y)``, ``{"image": x}`` or ``x``."""
    if isinstance(batch, dict):
        return batch["image"]
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


class Classifier(ZooModel):
    """Softmax (or, with one output, sigmoid) classification with cross-entropy loss,
    the maximum-likelihood objective for a categorical (Bernoulli) label."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:  # binary: one logit, P(y=1) = sigmoid(logit)
            return F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
        return F.cross_entropy(logits, labels)

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        x, y = batch_inputs(batch), batch_labels(batch)
        logits = self(x)
        with torch.no_grad():
            hard = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
            acc = (hard == y).float().mean()
        return {"loss_cls": self.loss(logits, y), "log_acc": acc}

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self(batch_inputs(batch))

    def build_evaluator(self, meta: dict) -> ClassificationEvaluator:
        return ClassificationEvaluator(meta["num_classes"], meta.get("class_names"))

    # -- pictures and command-line prediction ----------------------------------------
    def log_images(self, batch: Any, predictions: torch.Tensor) -> dict[str, torch.Tensor]:
        x = batch_inputs(batch)
        if x.ndim != 4:  # tabular inputs have no picture
            return {}
        return {"predictions": prediction_grid(x, batch_labels(batch), predictions)}

    def predict_cli(self, options: dict[str, str], data: Any, output: Path | None) -> None:
        """``predict.py run=DIR images=a.png,b.png [topk=3] [output=DIR]``: print the top
        classes of each image, read as the data config reads its images (channels,
        image_size); with ``output`` also write them to DIR/predictions.txt."""
        from zoo.data.vision import load_image

        unknown = sorted(set(options) - {"images", "topk"})
        if unknown or "images" not in options:
            raise UserError(f"predict options for a classifier: images=PATH[,PATH...] "
                            f"[topk=K]; got {', '.join(unknown) or 'no images'}")
        meta = data.meta
        if not meta.get("image_size") or not meta.get("channels"):
            raise UserError("this model was trained on tabular data; predict.py reads images")
        topk = options.get("topk", "3")
        if not topk.isdigit() or int(topk) < 1:
            raise UserError(f"topk={topk} must be a positive whole number")
        k = int(topk)
        names = meta.get("class_names") or [str(i) for i in range(self.num_classes)]
        device = next(self.parameters()).device
        lines = []
        for path in options["images"].split(","):
            p = Path(path)
            if not p.is_file():
                raise UserError(f"image {p} does not exist")
            x = load_image(p, int(meta["channels"]), int(meta["image_size"])).float() / 255.0
            logits = self.predict(x[None].to(device))[0]
            probs = (torch.sigmoid(torch.cat([-logits, logits])) if logits.numel() == 1
                     else logits.softmax(0))
            top = probs.topk(min(k, len(probs)))
            ranked = ", ".join(f"{names[i]} {v:.3f}" for v, i in zip(top.values.tolist(),
                                                                     top.indices.tolist()))
            lines.append(f"{p}: {ranked}")
        text = "\n".join(lines)
        print(text)
        if output is not None:  # a folder, as for every predict.py mode
            output.mkdir(parents=True, exist_ok=True)
            (output / "predictions.txt").write_text(text + "\n")


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


def prediction_grid(images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                    max_images: int = 16, cell: int = 64) -> torch.Tensor:
    """(3, H, W) picture of up to 16 inputs, each upscaled, labelled with its predicted
    class index and framed green when that is right, red when wrong."""
    n = min(max_images, len(images))
    x = images[:n].detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = x[:, :3]
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp(min=1e-8)  # per image to [0, 1]
    x = F.interpolate(x, size=(cell - 4, cell - 4), mode="nearest")
    logits = logits[:n].detach().cpu()
    pred = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)
    right = pred == labels[:n].cpu()
    frame = torch.where(right[:, None], torch.tensor([0.1, 0.8, 0.1]), torch.tensor([0.9, 0.1, 0.1]))
    tiles = frame[:, :, None, None].expand(-1, -1, cell, cell).clone()  # (n, 3, cell, cell)
    tiles[:, :, 2:-2, 2:-2] = x
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    grid = torch.zeros(3, rows * cell, cols * cell)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[:, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = tiles[i]
    return _draw_labels(grid, [str(int(p)) for p in pred], cols, cell)


def _draw_labels(grid: torch.Tensor, labels: list[str], cols: int, cell: int) -> torch.Tensor:
    """Write each tile's predicted class index in its top-left corner."""
    from PIL import Image, ImageDraw

    array = (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    image = Image.fromarray(array)
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(labels):
        r, c = divmod(i, cols)
        draw.text((c * cell + 4, r * cell + 3), text, fill=(255, 220, 0))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0
