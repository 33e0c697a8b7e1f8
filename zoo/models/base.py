"""The model contract every zoo model follows.

A model is an ``nn.Module`` that builds from keyword arguments equal to its config
keys and implements:

``training_step(batch, group="main") -> dict[str, Tensor]``
    Named scalar losses. The trainer backpropagates their sum for the optimizer
    group ``group`` and logs each of them. A model may also return detached
    scalars under names that start with ``log_`` (e.g. ``log_acc``): they are
    logged, never backpropagated.
``optimizer_groups() -> dict[str, list[Parameter]]``
    Default ``{"main": all parameters}``. A GAN returns
    ``{"discriminator": [...], "generator": [...]}``; the trainer steps one
    optimizer per group, in that order.
``predict(batch)``
    Eval-mode output in the task's standard form (class logits; per-image
    detection dicts; per-pixel logits; token logits; samples).
``task`` (class attribute)
    The name of the model's task in ``zoo.tasks`` ("classification", "detection", ...).
    The task owns everything around the math: the evaluator, the check of
    ``predict``'s output form, pictures, ``predict.py``, prediction files.
``on_train_start(data, run_dir)`` (optional)
    Called once before the first step of a new run (not on resume), e.g. to fit
    YOLO anchors on the training boxes. Anything it computes that prediction
    needs must live in buffers so checkpoints carry it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from zoo.registry import buildable


@buildable
class ZooModel(nn.Module):
    """Base class with the contract's defaults. Subclasses override what they need."""

    task: ClassVar[str] = ""

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    @torch.no_grad()
    def predict(self, batch: Any) -> Any:
        raise NotImplementedError

    def on_train_start(self, data: Any, run_dir: str) -> None:  # noqa: B027 - optional hook
        pass

    # -- forwarding to the task, for callers that still ask the model ------------------------
    def build_evaluator(self, meta: dict) -> Any:
        """The task's evaluator (``zoo.tasks.task_of(model).build_evaluator(model, meta)``).
        Remembers ``meta`` so that ``log_images`` can name classes on a resumed run too."""
        from zoo.tasks import task_of

        self._picture_meta = dict(meta)
        return task_of(self).build_evaluator(self, meta)

    def log_images(self, batch: Any, predictions: Any) -> dict[str, torch.Tensor]:
        """The task's pictures (``task_of(model).images(batch, predictions, meta)``)."""
        from zoo.tasks import task_of

        return task_of(self).images(batch, predictions, self.__dict__.get("_picture_meta", {}))

    def predict_cli(self, options: dict[str, str], data: Any, output: Any = None) -> Any:
        """The task's ``predict.py`` mode on this model and ``data``."""
        from pathlib import Path

        from zoo.tasks import task_of

        run = _PredictRun(self, data)
        return task_of(self).predict(run, options, Path(output) if output is not None else None)


class _PredictRun:
    def __init__(self, model: nn.Module, data: Any) -> None:
        self.model, self.data, self.run_dir = model, data, "RUN_DIR"
