"""Regression: one real number per sample, (B,) or (B, 1) predictions.

Evaluator: MSE, MAE and R² over the whole split. No pictures and no predict.py mode:
``evaluate.py run=DIR`` scores a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from zoo.data.batches import labels_of
from zoo.tasks.base import Task, evaluator_spec, shape_of


class RegressionTask(Task):
    name = "regression"
    title = "regressors"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.regression import RegressionEvaluator

        evaluator_spec(spec, self.evaluator_keys, self.name)
        return RegressionEvaluator()

    def check_output(self, predictions: Any, batch: Any) -> None:
        n = len(labels_of(batch))
        ok = (isinstance(predictions, torch.Tensor) and predictions.is_floating_point()
              and (predictions.shape == (n,) or predictions.shape == (n, 1)))
        if not ok:
            raise self.fail(f"expected ({n},) or ({n}, 1) real values, got {shape_of(predictions)}")
