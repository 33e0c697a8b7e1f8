"""Regression metrics: MSE, MAE and R², reduced once over the whole split."""

from __future__ import annotations

from typing import Any

import torch

from zoo.metrics.base import Evaluator
from zoo.metrics.classification import batch_labels


class RegressionEvaluator(Evaluator):
    """``update(pred, batch)`` with (B,) or (B, 1) predictions and targets."""

    state_keys = ("preds", "targets")

    def reset(self) -> None:
        self.preds: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        self.preds.append(predictions.detach().reshape(-1).double().cpu())
        self.targets.append(batch_labels(batch).detach().reshape(-1).double().cpu())

    def compute(self) -> dict[str, Any]:
        p = torch.cat(self.preds)
        t = torch.cat(self.targets)
        err = p - t
        ss_res = float((err**2).sum())
        ss_tot = float(((t - t.mean()) ** 2).sum())
        return {
            "mse": ss_res / max(len(t), 1),
            "mae": float(err.abs().mean()),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
            "num_samples": len(t),
        }
