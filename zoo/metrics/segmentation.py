"""Semantic-segmentation metrics (IoU, Dice, pixel accuracy, frequency-weighted IoU) and
the Dice losses that train for them.

The evaluator accumulates one (C, C+1) int64 confusion matrix over the whole split:
rows are true classes, columns predicted classes, plus a last column for pixels
predicted as ``ignore_index`` (e.g. an "unlabelled" 255 in a prediction PNG), which
count as a miss of the true class and as no class's prediction. With I = diagonal,
P = predicted-pixel counts and T = true-pixel counts per class:

* IoU_c = I / (P + T - I), Dice_c = 2I / (P + T), both over the whole split (the
  dataset-level convention of PASCAL VOC and Cityscapes, not a mean of per-image
  scores);
* absent classes: a class absent from both prediction and ground truth everywhere
  has 0/0: it is NaN (``null`` in ``per_class``), named in ``absent_classes`` and
  left out of the means; a class that is only predicted, or only true, scores 0 and
  stays in. This is torchmetrics' ``MulticlassJaccardIndex(average="macro")`` (which
  gives such classes weight 0) and scikit-learn's ``jaccard_score(average="macro")``
  with the labels it infers from the data;
* pixel accuracy = sum I / sum T; frequency-weighted IoU = sum_c (T_c / sum T) IoU_c
  (Long et al., FCN);
* pixels whose target is ``ignore_index`` are removed from both prediction and
  target. An ``ignore_index`` inside 0..C-1 (e.g. 0, a background that is not scored)
  also takes that class out of the scores: its IoU and Dice are ``null`` and it is
  left out of the means, while predicting it on another class's pixel stays a miss
  of that class (torchmetrics' ``ignore_index`` does the same);
* inputs are checked: logits must have C channels (or one binary logit when C = 2),
  and integer predictions must be a class or ``ignore_index``; anything else is a
  ``DataError`` naming the value, never a silently shifted confusion matrix.

* small-object IoU: an *object* is a connected component (4-connected) of one class
  other than the background (class 0) in the ground truth; it is *small* when it covers
  less than ``small_area`` (default 1%) of the image's scored pixels. Its IoU is taken
  against the predicted components of its class that touch it (a missed object scores
  0; a prediction that merges it with a neighbour of its class is charged for the
  merge); ``small_object_iou`` is the mean over all small objects of the split and
  ``num_small_objects`` their count. It shows what the dataset-level IoU hides: a
  large region's pixels outweigh many small objects.

Counting happens on the predictions' device (a ``bincount`` per batch, one host
sync for the value checks); only the (C, C+1) matrix moves to the CPU, in ``compute``,
except for the small-object IoU, whose connected components are found on the CPU
(``scipy.ndimage.label``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zoo.errors import DataError
from zoo.metrics.base import Evaluator

SMALL_AREA = 0.01  # an object below this fraction of an image's scored pixels is "small"


def _labels_from(predictions: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, H, W) argmax; one channel means a binary logit (> 0)."""
    if predictions.ndim == 4:
        if predictions.shape[1] == 1:
            return (predictions[:, 0] > 0).long()
        return predictions.argmax(1)
    if predictions.is_floating_point():
        raise ValueError("(B, H, W) predictions must be integer class labels, "
                         "or pass (B, C, H, W) logits")
    return predictions.long()


def batch_masks(batch: Any) -> torch.Tensor:
    """The (B, H, W) target of a segmentation batch: ``(images, masks)`` or ``{"mask": masks}``."""
    if isinstance(batch, dict):
        return batch["mask"] if "mask" in batch else batch["masks"]
    return batch[1]


def segmentation_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ignore_index: int | None = 255, pred_in_range: bool = False) -> torch.Tensor:
    """(C, C+1) int64 confusion counts of (..., H, W) integer labels, on their device.

    One fused index ``target * (C+2) + pred`` and one ``bincount``. Columns 0..C-1 are
    the classes, column C a prediction of ``ignore_index`` (outside 0..C-1), column
    C+1 any other predicted value; every target value gets a row. The ignored row is
    dropped, and a row for a value that is neither a class nor ``ignore_index``, or a
    non-empty column C+1, is reported (``DataError``) after one check of both.
    ``pred_in_range`` skips the mapping of predictions (an argmax over C channels is
    always in range).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}; "
                         "resize predictions to the mask size first")
    c = int(num_classes)
    w = c + 2
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    if not pred_in_range:
        outside = (p < 0) | (p >= c)
        unlabelled = outside & (p == ignore_index) if ignore_index is not None else torch.zeros_like(outside)
        p = p.masked_fill(outside, c + 1).masked_fill(unlabelled, c)
    if ignore_index is not None and ignore_index < 0:  # give the ignored pixels a row of their own
        if bool((t == c).any()):
            raise _bad_value(c, c, ignore_index)
        t = t.masked_fill(t == ignore_index, c)
        ignored_row = c
    else:
        ignored_row = ignore_index
    try:
        counts = torch.bincount(torch.add(p, t, alpha=w), minlength=c * w)
    except RuntimeError:  # a negative target value
        raise _bad_value(int(t.min()), c, ignore_index) from None
    rows = -(-counts.shape[0] // w)
    counts = F.pad(counts, (0, rows * w - counts.shape[0])).reshape(rows, w)
    if ignored_row is not None and ignored_row < rows:
        counts[ignored_row] = 0
    extra = counts[c:].sum(1)      # pixels whose target is not a class
    invalid = counts[:c, c + 1]    # pixels predicted as neither a class nor ignore_index
    bad_target, bad_pred = torch.stack([extra.sum() if extra.numel() else extra.new_zeros(()),
                                        invalid.sum()]).gt(0).tolist()
    if bad_target:
        raise _bad_value(c + int(extra.nonzero()[0, 0]), c, ignore_index)
    if bad_pred:
        raise _bad_prediction(pred, target, c, ignore_index)
    return counts[:c, :c + 1]


def _bad_value(value: int, c: int, ignore_index: int | None) -> DataError:
    return DataError(f"mask value {value} is neither a class in 0..{c - 1} nor the ignore index "
                     f"{ignore_index}; check num_classes and ignore_index")


def _bad_prediction(pred: torch.Tensor, target: torch.Tensor, c: int, ignore_index: int | None) -> DataError:
    p = pred.reshape(-1).long()
    keep = target.reshape(-1) != ignore_index if ignore_index is not None else torch.ones_like(p, dtype=torch.bool)
    bad = keep & (p < 0) | keep & (p >= c)
    if ignore_index is not None:
        bad &= p != ignore_index
    value = int(p[bad][0])
    return DataError(f"predicted label {value} is neither a class in 0..{c - 1} nor the ignore index "
                     f"{ignore_index}; check num_classes (and the model's output)")


def scores_from_counts(cm: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class I, P, T (int64) and IoU, Dice (float64, NaN for absent classes) from (C, C+1) counts."""
    cm = cm.to(torch.int64).cpu()
    inter = cm.diagonal()
    pred = cm[:, :-1].sum(0)
    true = cm.sum(1)
    union = pred + true - inter
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    iou = torch.where(union > 0, inter.double() / union.clamp(min=1).double(), nan)
    dice = torch.where(pred + true > 0, 2 * inter.double() / (pred + true).clamp(min=1).double(), nan)
    return {"intersection": inter, "pred": pred, "true": true, "iou": iou, "dice": dice}


class SegmentationEvaluator(Evaluator):
    """Mean IoU (Jaccard; Everingham et al., PASCAL VOC), mean Dice (Dice 1945; the
    V-Net/U-Net evaluation measure), pixel accuracy and frequency-weighted IoU (Long et
    al., FCN), accumulated as exact integer counts over the split.

    ``update(predictions, batch)``: (B, C, H, W) logits (C = ``num_classes``, or one
    binary logit when it is 2) or (B, H, W) integer labels in 0..C-1 (or
    ``ignore_index``: an unlabelled pixel), and ``batch = (images, masks)`` with
    (B, H, W) int64 masks. ``compute()`` gives ``miou, mdice, pixel_accuracy,
    fw_iou``, ``per_class`` {name: {iou, dice}} (None for a class absent everywhere
    and for an ``ignore_index`` inside 0..C-1), ``absent_classes`` and
    ``confusion_matrix`` (C x C, rows true). Absent classes are left out of the means
    (the module docstring gives the convention and its references). ``iou_per_class``
    and ``dice_per_class`` are {name: value or None}, and ``small_object_iou``,
    ``num_small_objects`` score objects smaller than ``small_area`` of the image.
    """

    state_keys = ("cm", "small")

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 ignore_index: int = 255, small_area: float = SMALL_AREA) -> None:
        self.small_area = float(small_area)
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        self.ignore_index = ignore_index
        self.last: dict[str, Any] | None = None
        super().__init__()

    def reset(self) -> None:
        c = self.num_classes
        self.cm = torch.zeros(c, c + 1, dtype=torch.int64)
        self.small: list[tuple[int, int]] = []   # (intersection, union) per small object

    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        target = batch_masks(batch)
        if predictions.ndim == 4:
            ch = predictions.shape[1]
            if ch != self.num_classes and not (ch == 1 and self.num_classes == 2):
                raise DataError(f"predictions have {ch} channels but num_classes is {self.num_classes}: "
                                f"a segmenter's logits are (B, num_classes, H, W) (one channel only for "
                                f"two classes); check the model's out channels and data.num_classes")
        pred = _labels_from(predictions.detach())
        counts = segmentation_counts(pred, target.detach().to(pred.device), self.num_classes,
                                     self.ignore_index, pred_in_range=predictions.ndim == 4)
        if self.cm.device != counts.device:  # keep the running sum where the counting happens
            self.cm = self.cm.to(counts.device)
        self.cm += counts
        self.small += small_objects(pred, target, self.small_area, self.ignore_index)

    def compute(self) -> dict[str, Any]:
        s = scores_from_counts(self.cm)
        iou, dice, true = s["iou"], s["dice"], s["true"]
        present = ~torch.isnan(iou)
        absent = ~present
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            present[self.ignore_index] = False  # ignored, not absent: never scored
        total = int(true.sum())

        def nanmean(x: torch.Tensor) -> float:
            return float(x[present].mean()) if bool(present.any()) else float("nan")

        fw = float((true.double() * torch.nan_to_num(iou)).sum() / total) if total else float("nan")
        out: dict[str, Any] = {
            "miou": nanmean(iou), "mdice": nanmean(dice),
            "pixel_accuracy": float(s["intersection"].sum()) / total if total else float("nan"),
            "fw_iou": fw, "num_pixels": total,
            "small_object_iou": (sum(i / u for i, u in self.small) / len(self.small)
                                 if self.small else float("nan")),
            "num_small_objects": len(self.small),
        }
        out["per_class"] = {
            name: {"iou": None if not present[i] else float(iou[i]),
                   "dice": None if not present[i] else float(dice[i])}
            for i, name in enumerate(self.class_names)
        }
        out["iou_per_class"] = {n: v["iou"] for n, v in out["per_class"].items()}
        out["dice_per_class"] = {n: v["dice"] for n, v in out["per_class"].items()}
        out["absent_classes"] = [n for i, n in enumerate(self.class_names) if absent[i]
                                 and i != self.ignore_index]
        out["confusion_matrix"] = self.cm[:, :-1].cpu().tolist()
        self.last = out
        return out

    def save_plots(self, directory: str | os.PathLike) -> list[Path]:
        """IoU per class and the (row-normalised) confusion matrix as PNGs."""
        from zoo.metrics import plots

        out = self.last if self.last is not None else self.compute()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        ious = {n: v["iou"] for n, v in out["per_class"].items() if v["iou"] is not None}
        return [
            plots.plot_per_class_bars(ious, "IoU per class", directory / "iou_per_class.png"),
            plots.plot_confusion_matrix(out["confusion_matrix"], self.class_names,
                                        directory / "confusion_matrix.png"),
        ]


def small_objects(pred: torch.Tensor, target: torch.Tensor, small_area: float = SMALL_AREA,
                  ignore_index: int | None = 255, background: int = 0) -> list[tuple[int, int]]:
    """(intersection, union) pixel counts of every small ground-truth object of (B, H, W)
    integer ``pred`` and ``target`` (see the module docstring), in image order."""
    from scipy import ndimage

    out: list[tuple[int, int]] = []
    p_all, t_all = pred.detach().cpu().numpy(), target.detach().cpu().numpy()
    for p, t in zip(p_all, t_all):
        valid = t != ignore_index if ignore_index is not None else np.ones(t.shape, dtype=bool)
        limit = small_area * int(valid.sum())
        for c in np.unique(t[valid]).tolist():
            if c == background:
                continue
            objects, n = ndimage.label(t == c)
            areas = np.bincount(objects.ravel(), minlength=n + 1)
            small = [k for k in range(1, n + 1) if areas[k] < limit]
            if not small:
                continue
            pc = (p == c) & valid
            pred_comp, _ = ndimage.label(pc)
            for k in small:
                obj = objects == k
                touching = np.unique(pred_comp[obj])
                touching = touching[touching > 0]
                region = np.isin(pred_comp, touching) if len(touching) else np.zeros_like(obj)
                inter = int((obj & region).sum())
                out.append((inter, int((obj | region).sum())))
    return out


# -- losses ----------------------------------------------------------------------------------

def soft_dice(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = 255,
              eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class soft Dice over the batch and which classes the metric would score.

    ``logits`` (B, C, H, W) (C = 1: one binary logit, treated as two classes);
    ``target`` (B, H, W). Probabilities p (softmax/sigmoid) and one-hot t over the
    non-ignored pixels give d_c = (2 sum p t + eps) / (sum p + sum t + eps), shape (C,).
    The mask (C,) bool marks classes present in the target or in the argmax
    prediction, except an ``ignore_index`` inside 0..C-1 — the classes
    ``SegmentationEvaluator`` scores. On hard
    (one-hot) probabilities d_c is the metric's Dice up to ``eps``.
    """
    if logits.shape[1] == 1:
        p1 = torch.sigmoid(logits.float())
        probs = torch.cat([1 - p1, p1], 1)
    else:
        probs = logits.float().softmax(1)
    c = probs.shape[1]
    target = target.long()
    valid = (target != ignore_index) if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    safe = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(safe, c).permute(0, 3, 1, 2).to(probs.dtype)  # (B, C, H, W)
    w = valid.unsqueeze(1).to(probs.dtype)
    probs, onehot = probs * w, onehot * w
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    hard = F.one_hot(probs.argmax(1), c).permute(0, 3, 1, 2).bool() & valid.unsqueeze(1)
    scored = (onehot.sum(dims) > 0) | hard.any(dim=(0, 2, 3))
    if ignore_index is not None and 0 <= ignore_index < c:
        scored[ignore_index] = False  # an ignored class is never scored by the metric
    return dice, scored


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
              eps: float = 1e-6) -> torch.Tensor:
    """1 - mean soft Dice over the classes the metric scores on this batch (see ``soft_dice``).

    On hard predictions, ``1 - dice_loss`` equals ``SegmentationEvaluator``'s mdice for
    the same batch (up to ``eps``): both average over the classes present in the
    target or in the prediction. A scalar; the selection of classes carries no gradient.
    """
    dice, scored = soft_dice(logits, target, ignore_index, eps)
    if not bool(scored.any()):
        return logits.sum() * 0.0  # every pixel ignored: nothing to learn, keep the graph
    return 1.0 - dice[scored].mean()
