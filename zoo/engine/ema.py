"""Exponential moving average of a model's weights (Polyak averaging)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


class ModelEMA:
    """Shadow copy ``s = decay * s + (1 - decay) * w`` of floating-point parameters and
    buffers, updated after every optimizer step; ``swapped(model)`` evaluates with it."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        # warm-up of the decay, as is usual, so early averages are not dominated by the init
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.dtype.is_floating_point:
                s.mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                s.copy_(v)

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[None]:
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield
        finally:
            model.load_state_dict(backup)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, sd: dict) -> None:
        self.decay, self.updates = float(sd["decay"]), int(sd["updates"])
        for k, v in sd["shadow"].items():
            self.shadow[k].copy_(v)
