"""Classification metrics: accuracy, top-k, per-class precision/recall/F1, confusion matrix.

All state is integer counts, so results are exact and independent of batching and
of the number of processes.

Absent classes: a class that is neither a true label nor a prediction anywhere in
the split has no precision, recall or F1 (``None`` in ``per_class``, named in
``absent_classes``) and is left out of the macro averages, as scikit-learn does with
the labels it infers from the data (``f1_score(y, pred, average="macro")``) and as
torchmetrics' ``MulticlassF1Score(average="macro")`` does. A class that is only
predicted, or only true, stays in with 0 where its ratio is 0/0 (scikit-learn's
``zero_division=0``). Segmentation's mIoU and mean Dice follow the same rule.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from zoo.metrics.base import Evaluator


def confusion_matrix(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; rows are true classes, columns predictions."""
    idx = target.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def precision_recall_f1(cm: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class precision, recall, F1 from a confusion matrix (0 where undefined, as sklearn's
    ``zero_division=0``), the support, and ``present``: the class is true or predicted somewhere."""
    cm = cm.double()
    tp = cm.diag()
    pred_pos = cm.sum(0)
    true_pos = cm.sum(1)
    precision = torch.where(pred_pos > 0, tp / pred_pos.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(true_pos > 0, tp / true_pos.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(tp))
    return {"precision": precision, "recall": recall, "f1": f1, "support": true_pos,
            "present": (pred_pos + true_pos) > 0}


class ClassificationEvaluator(Evaluator):
    """Accuracy, top-k accuracy, macro/per-class precision/recall/F1 and the confusion matrix.

    Macro averages run over the classes present in the labels or the predictions
    (see the module docstring); ``per_class`` holds None for the others, which
    ``absent_classes`` names.

    ``update(logits, batch)`` takes (B, C) scores and a batch whose second element
    (or ``batch["label"]``) holds the (B,) integer labels.
    """

    state_keys = ("cm", "topk_correct")

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 topk: Sequence[int] = (5,)) -> None:
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        # top-k only where it means something (k < number of classes)
        self.topk = tuple(k for k in topk if k < self.num_classes)
        super().__init__()

    def reset(self) -> None:
        self.cm = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self.topk_correct = torch.zeros(len(self.topk), dtype=torch.int64)

    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        target = batch_labels(batch).detach().to(predictions.device)
        preds = predictions.detach()
        if preds.ndim == 2:
            if preds.shape[1] == 1:  # binary logit
                hard = (preds[:, 0] > 0).long()
            else:
                hard = preds.argmax(1)
        else:
            hard = preds.long()
        if self.cm.device != preds.device:  # count where the predictions are: no sync per batch
            self.cm = self.cm.to(preds.device)
            self.topk_correct = self.topk_correct.to(preds.device)
        self.cm += confusion_matrix(hard, target, self.num_classes)
        if self.topk and preds.ndim == 2 and preds.shape[1] > 1:
            maxk = max(self.topk)
            top = preds.topk(maxk, dim=1).indices  # (B, maxk)
            hits = top == target[:, None]
            self.topk_correct += torch.stack([hits[:, :k].any(1).sum() for k in self.topk])

    def compute(self) -> dict[str, Any]:
        self.cm, self.topk_correct = self.cm.cpu(), self.topk_correct.cpu()
        total = int(self.cm.sum())
        out: dict[str, Any] = {"accuracy": float(self.cm.diag().sum()) / max(total, 1)}
        for k, c in zip(self.topk, self.topk_correct.tolist()):
            out[f"top{k}_accuracy"] = c / max(total, 1)
        prf = precision_recall_f1(self.cm)
        present = prf["present"]
        for key in ("precision", "recall", "f1"):
            out[f"macro_{key}"] = float(prf[key][present].mean()) if bool(present.any()) else 0.0
        out["num_samples"] = total

        def value(key: str, i: int) -> float | None:
            return float(prf[key][i]) if bool(present[i]) else None

        out["per_class"] = {
            name: {"precision": value("precision", i), "recall": value("recall", i),
                   "f1": value("f1", i), "support": int(prf["support"][i])}
            for i, name in enumerate(self.class_names)
        }
        out["absent_classes"] = [n for i, n in enumerate(self.class_names) if not bool(present[i])]
        out["confusion_matrix"] = self.cm.tolist()
        return out

    def save_plots(self, directory: str | os.PathLike) -> list[Path]:
        """The row-normalised confusion matrix and F1 per class as PNGs."""
        from zoo.metrics import plots

        directory = Path(directory)
        f1 = precision_recall_f1(self.cm.cpu())["f1"].tolist()
        return [
            plots.plot_confusion_matrix(self.cm.cpu().tolist(), self.class_names,
                                        directory / "confusion_matrix.png"),
            plots.plot_per_class_bars(dict(zip(self.class_names, f1)), "F1 per class",
                                      directory / "f1_per_class.png"),
        ]


def batch_labels(batch: Any) -> torch.Tensor:
    """The label tensor of a classification batch (see ``zoo.data.batches.labels_of``)."""
    from zoo.data.batches import labels_of

    return labels_of(batch)
