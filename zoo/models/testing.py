"""Tiny models and data that exercise the trainer's contract in tests: two optimizer
groups stepped in order (as a GAN's discriminator then generator), dropout (RNG state
in checkpoints), and a loss that can be made non-finite on purpose."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from zoo.data.base import DataModule
from zoo.models.base import ZooModel


class ToyRegressionData(DataModule):
    """y = x·w + noise with fixed seeds; train/val/test of n/4 each for val and test."""

    def __init__(self, *, n: int = 256, features: int = 8, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(features=features, **kwargs)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, features, generator=g)
        w = torch.randn(features, generator=g)
        y = x @ w + 0.1 * torch.randn(n, generator=g)
        q = n // 4
        self._splits = {"train": (x[: 2 * q], y[: 2 * q]), "val": (x[2 * q: 3 * q], y[2 * q: 3 * q]),
                        "test": (x[3 * q:], y[3 * q:])}

    def build(self, split: str) -> Dataset:
        return TensorDataset(*self._splits[split])


class TwoGroupRegressor(ZooModel):
    """An MLP whose first layer ("first") and head ("second") have separate optimizers.

    ``nan_at_step`` makes the loss NaN on that (1-based) call of training_step for group
    "first" — to test the trainer's non-finite handling.
    """

    task = "regression"

    def __init__(self, *, features: int = 8, hidden: int = 16, dropout: float = 0.1,
                 nan_at_step: int | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, 1)
        self.nan_at_step = nan_at_step
        self.calls = {"first": 0, "second": 0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"first": list(self.body.parameters()), "second": list(self.head.parameters())}

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        x, y = batch
        self.calls[group] += 1
        loss = ((self(x) - y) ** 2).mean()
        if group == "first" and self.nan_at_step is not None and self.calls[group] == self.nan_at_step:
            loss = loss * float("nan")
        return {f"loss_{group}": loss}

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self(batch[0])
