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
Every other hook the trainer calls is declared below with a no-op default, so the
engine never asks whether a model has a method:

``on_after_step(group, lr)``
    After each optimizer step of ``group``, with the rate of the step just taken
    (a lasso's proximal step).
``training_state()`` / ``load_training_state(state)``
    State carried from one step to the next outside the weights (an RNN language
    model's hidden state under truncated BPTT): a dict of tensors or None, saved in
    ``last.pt`` so that ``resume=`` is exact.
``ema_module()``
    The sub-module that ``trainer.ema`` averages and validation swaps in (a GAN
    returns its generator); default the whole model.
``fsdp_units()``
    The sub-modules that ``trainer.strategy=fsdp`` shards as one unit each (gathered
    for their forward, freed after): default the members of the model's outermost
    ``nn.ModuleList``s (a Transformer's blocks); the rest of the model is one more unit.
``step_strategy``
    ``"grouped"`` (default): the trainer steps one optimizer per group in order.
    ``"manual"``: ``training_step(batch, handle)`` drives backward and optimizer
    steps itself through ``handle`` (``zoo.engine.step.StepHandle``), which keeps
    AMP scaling, ``no_sync`` during accumulation, clipping, schedulers, gradient-norm
    logging and the non-finite policy: a discriminator:generator ratio, CycleGAN
    reusing its generated images, or a gradient-free learner (a bandit, whose
    ``optimizer_groups()`` is empty). See ``zoo.engine.step``.
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
    step_strategy: ClassVar[str] = "grouped"

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    @torch.no_grad()
    def predict(self, batch: Any) -> Any:
        raise NotImplementedError

    def on_train_start(self, data: Any, run_dir: str) -> None:
        pass

    def on_after_step(self, group: str, lr: float) -> None:
        pass

    def training_state(self) -> dict[str, torch.Tensor] | None:
        return None

    def load_training_state(self, state: dict[str, torch.Tensor] | None) -> None:
        pass

    def ema_module(self) -> nn.Module:
        return self

    def fsdp_units(self) -> list[nn.Module]:
        units: list[nn.Module] = []
        inside: set[int] = set()
        for m in self.modules():
            if id(m) in inside:
                continue
            if isinstance(m, nn.ModuleList):
                units.extend(m)
                inside.update(id(x) for x in m.modules())
        return units
