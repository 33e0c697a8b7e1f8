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
``build_evaluator(meta) -> Evaluator``
    The evaluator validation and ``evaluate.py`` use for this model on data with
    metadata ``meta``.
``on_train_start(data, run_dir)`` (optional)
    Called once before the first step of a new run (not on resume), e.g. to fit
    YOLO anchors on the training boxes. Anything it computes that prediction
    needs must live in buffers so checkpoints carry it.
``log_images(batch, predictions) -> dict[str, Tensor]`` (optional)
    Pictures for TensorBoard/PNG: name -> (3, H, W) float image in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.registry import buildable


@buildable
class ZooModel(nn.Module):
    """Base class with the contract's defaults. Subclasses override what they need."""

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    @torch.no_grad()
    def predict(self, batch: Any) -> Any:
        raise NotImplementedError

    def build_evaluator(self, meta: dict) -> Any:
        raise NotImplementedError

    def on_train_start(self, data: Any, run_dir: str) -> None:  # noqa: B027 - optional hook
        pass

    def log_images(self, batch: Any, predictions: Any) -> dict[str, torch.Tensor]:
        return {}
