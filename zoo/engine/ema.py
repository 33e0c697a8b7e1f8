"""Exponential moving average of weights (Polyak averaging), as torch implements it.

The average is ``torch.optim.swa_utils.AveragedModel``: the first update copies the
weights, each later one is ``s = d * s + (1 - d) * w`` over parameters and buffers. With
``warmup=False`` the decay is constant, ``d = decay`` (torch's ``get_ema_multi_avg_fn``);
with ``warmup=True`` (``trainer.ema_warmup``, the default) update n uses
``d = min(decay, (1 + n) / (10 + n))``, so the weights of the first steps, nearly the
random init, do not linger: at decay 0.999 a constant decay still gives the first
update's weights 0.999^2000 = 13.5% of the average after 2,000 steps. It covers
``model.ema_module()`` only (the whole model by default; a GAN's generator), and
validation swaps the averaged weights into that module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def warmup_ema_multi_avg_fn(decay: float):
    """AveragedModel's ``multi_avg_fn`` for an EMA whose decay warms up with the number of
    updates already averaged: ``d = min(decay, (1 + n) / (10 + n))``."""
    @torch.no_grad()
    def ema_update(ema_params: list[torch.Tensor], params: list[torch.Tensor],
                   num_averaged: torch.Tensor) -> None:
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        if ema_params[0].is_floating_point() or ema_params[0].is_complex():
            torch._foreach_lerp_(ema_params, params, 1 - d)
        else:  # integer buffers (BatchNorm's num_batches_tracked): the current count
            torch._foreach_copy_(ema_params, params)

    return ema_update


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay, self.warmup = float(decay), bool(warmup)
        self.module = model.ema_module()
        self.prefix = _prefix_of(model, self.module)
        self.averaged = AveragedModel(self.module, multi_avg_fn=self._avg_fn(), use_buffers=True)
        self.averaged.requires_grad_(False)

    def _avg_fn(self):
        return (warmup_ema_multi_avg_fn if self.warmup else get_ema_multi_avg_fn)(self.decay)

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    @property
    def shadow(self) -> dict[str, torch.Tensor]:
        """The averaged state of ``ema_module()`` (its own key names)."""
        return self.averaged.module.state_dict()

    def update(self) -> None:
        self.averaged.update_parameters(self.module)

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``model.state_dict()`` with the averaged weights in place of ``ema_module()``'s."""
        state = dict(model.state_dict())
        for k, v in self.shadow.items():
            state[self.prefix + k] = v.detach().clone()
        return state

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        backup = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(self.shadow)
        try:
            yield
        finally:
            self.module.load_state_dict(backup)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.decay = float(sd["decay"])
        self.averaged.multi_avg_fn = self._avg_fn()
        self.averaged.module.load_state_dict(sd["shadow"])
        self.averaged.n_averaged.fill_(int(sd["updates"]))


def _prefix_of(model: nn.Module, sub: nn.Module) -> str:
    if sub is model:
        return ""
    for name, m in model.named_modules():
        if m is sub:
            return name + "."
    raise ValueError("ema_module() must return the model or one of its sub-modules")
