"""Losses of the semantic segmenters, chosen with ``model.loss``:

* ``ce``: pixel cross-entropy with ``ignore_index`` and optional class weights (a list, or
  ``median_frequency``: SegNet's median frequency balancing, fitted to the training split
  when training starts, see ``median_frequency_weights``);
* ``dice``: 1 - soft multi-class Dice (``zoo.metrics.segmentation.dice_loss``: on hard
  predictions it is exactly 1 - the evaluator's mDice);
* ``ce_dice``: CE + ``dice_weight`` x Dice;
* ``edge_weighted_ce``: CE weighted per pixel by U-Net's map (Ronneberger et al. 2015, eq. 2)
  ``w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` plus an inverse-area term
  ``area_weight * min(small_area / A(x), area_cap)`` on the pixels of an object of ``A(x)``
  pixels, which raises small objects the way the border term raises the gaps between
  touching ones. ``w_c`` is the class weight of the pixel's true class (1 without
  ``class_weights``); d1, d2 are the distances to the nearest and second-nearest object.

Objects are the connected components of each non-background class of the label map
(``scipy.ndimage.label``), so two touching objects of *different* classes are two
objects; touching objects of the same class are one (the label map cannot tell them apart).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from zoo.metrics.segmentation import dice_loss

LOSSES = ("ce", "dice", "ce_dice", "edge_weighted_ce")


def label_components(label_map: np.ndarray, ignore_index: int = 255,
                     background: int = 0) -> tuple[np.ndarray, int]:
    """(H, W) class ids -> ((H, W) int32 object ids 1..N, 0 elsewhere; N): the connected
    components (4-connected) of every class except ``background`` and ``ignore_index``."""
    from scipy import ndimage

    out = np.zeros(label_map.shape, dtype=np.int32)
    n = 0
    for c in np.unique(label_map):
        if c in (background, ignore_index):
            continue
        comp, k = ndimage.label(label_map == c)
        out[comp > 0] = comp[comp > 0] + n
        n += k
    return out, n


def unet_weight_map(label_map: np.ndarray, *, w0: float = 10.0, sigma: float = 5.0,
                    class_weights: Sequence[float] | None = None, area_weight: float = 0.0,
                    small_area: float = 0.01, area_cap: float = 10.0,
                    ignore_index: int = 255) -> np.ndarray:
    """(H, W) float32 weights w(x) of one label map (see the module docstring).
    ``small_area`` is a fraction of the image's pixels; ignored pixels get weight 0."""
    from scipy import ndimage

    h, w = label_map.shape
    valid = label_map != ignore_index
    if class_weights is not None:
        cw = np.asarray(class_weights, dtype=np.float32)
        weights = np.where(valid, cw[np.where(valid, label_map, 0)], 0).astype(np.float32)
    else:
        weights = valid.astype(np.float32)
    objects, n = label_components(label_map, ignore_index)
    if n >= 2 and w0 > 0:
        # (N, H, W) distance of every pixel to each object; the two smallest are d1, d2
        dist = np.stack([ndimage.distance_transform_edt(objects != k) for k in range(1, n + 1)])
        d = np.partition(dist, 1, axis=0)[:2] if n > 2 else np.sort(dist, axis=0)
        weights += (w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma ** 2))).astype(np.float32) * valid
    if n >= 1 and area_weight > 0:
        areas = np.bincount(objects.ravel(), minlength=n + 1).astype(np.float32)
        ref = small_area * h * w
        term = np.minimum(ref / np.maximum(areas, 1), area_cap) * area_weight
        term[0] = 0.0  # background
        weights += term[objects]
    return weights


def median_frequency_weights(label_maps: Iterable[torch.Tensor | np.ndarray], num_classes: int,
                             ignore_index: int = 255) -> torch.Tensor:
    """Median frequency balancing (Eigen & Fergus 2015, SegNet's training): weight(c) =
    median_c freq(c) / freq(c), where freq(c) is the pixels of class c over the pixels of
    the images that contain c. Rare classes weigh more than 1, the dominant background
    less. Classes absent from every map get 1. Returns (num_classes,) float32."""
    pixels = np.zeros(num_classes, dtype=np.float64)
    present_area = np.zeros(num_classes, dtype=np.float64)
    for m in label_maps:
        m = np.asarray(m).reshape(-1)
        m = m[m != ignore_index]
        counts = np.bincount(m, minlength=num_classes)[:num_classes].astype(np.float64)
        pixels += counts
        present_area += (counts > 0) * m.size
    seen = present_area > 0
    weights = np.ones(num_classes, dtype=np.float64)
    if seen.any():
        freq = pixels[seen] / present_area[seen]
        weights[seen] = np.median(freq) / freq
    return torch.from_numpy(weights.astype(np.float32))


class SegmentationLoss(torch.nn.Module):
    """The loss of ``model.loss`` on (B, C, H, W) logits and (B, H, W) int64 targets."""

    def __init__(self, kind: str = "ce", *, ignore_index: int = 255,
                 class_weights: Sequence[float] | str | None = None, dice_weight: float = 1.0,
                 w0: float = 10.0, sigma: float = 5.0, area_weight: float = 1.0,
                 small_area: float = 0.01) -> None:
        super().__init__()
        from zoo.errors import UserError

        self.median_frequency = class_weights == "median_frequency"
        if isinstance(class_weights, str) and not self.median_frequency:
            raise UserError(f"model.class_weights={class_weights} is neither a list of weights, one "
                            "per class, nor median_frequency")
        if kind not in LOSSES:
            from zoo.errors import choices

            raise UserError(f"model.loss={kind} is not one of {choices(LOSSES)}")
        self.kind = kind
        self.ignore_index = int(ignore_index)
        self.class_weights = (None if class_weights is None or self.median_frequency
                              else [float(w) for w in class_weights])
        if self.median_frequency:   # sized by check_classes, filled by fit_class_weights
            self.register_buffer("class_weight", torch.ones(0))
        self.dice_weight = float(dice_weight)
        self.w0, self.sigma = float(w0), float(sigma)
        self.area_weight, self.small_area = float(area_weight), float(small_area)

    def check_classes(self, num_classes: int) -> None:
        if self.median_frequency:
            self.class_weight = torch.ones(num_classes)
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            from zoo.errors import UserError

            raise UserError(f"model.class_weights has {len(self.class_weights)} values for "
                            f"{num_classes} classes")

    def fit_class_weights(self, label_maps: Iterable[torch.Tensor | np.ndarray]) -> list[float] | None:
        """With ``median_frequency``: fit the class weights to these (training) label maps
        and return them; otherwise None. The weights are a buffer, so checkpoints (and a
        resumed run) carry them."""
        if not self.median_frequency:
            return None
        w = median_frequency_weights(label_maps, len(self.class_weight), self.ignore_index)
        self.class_weight.copy_(w.to(self.class_weight))
        return w.tolist()

    def weights(self) -> list[float] | None:
        """The per-class CE weights in use (None: unweighted)."""
        return self.class_weight.tolist() if self.median_frequency else self.class_weights

    def weight_maps(self, target: torch.Tensor) -> torch.Tensor:
        """(B, H, W) float U-Net weights of the targets (computed on the CPU)."""
        maps = [unet_weight_map(t, w0=self.w0, sigma=self.sigma, class_weights=self.weights(),
                                area_weight=self.area_weight, small_area=self.small_area,
                                ignore_index=self.ignore_index)
                for t in target.detach().cpu().numpy()]
        return torch.from_numpy(np.stack(maps)).to(target.device)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.long()
        if self.kind == "dice":
            return dice_loss(logits, target, self.ignore_index)
        if self.kind == "edge_weighted_ce":
            ce = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
            valid = (target != self.ignore_index).sum().clamp(min=1)
            return (ce * self.weight_maps(target)).sum() / valid
        weight = None
        if self.median_frequency:
            weight = self.class_weight.float()
        elif self.class_weights is not None:
            weight = torch.tensor(self.class_weights, dtype=torch.float32, device=logits.device)
        ce = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=self.ignore_index)
        # every pixel ignored: CE's mean is NaN; no host sync to find out
        ce = torch.where((target != self.ignore_index).any(), ce, logits.sum() * 0.0)
        if self.kind == "ce":
            return ce
        return ce + self.dice_weight * dice_loss(logits, target, self.ignore_index)
