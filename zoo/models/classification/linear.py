"""Logistic regression (binary sigmoid, multinomial softmax). Least-squares regression
lives in :mod:`zoo.models.regression.linear`; its names stay importable from here for the
``config.yaml`` of older run directories."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import UserError, choices
from zoo.models.classification.base import Classifier, check_flat_input
from zoo.models.regression.linear import (
    SOLVERS,
    LinearRegression,
    soft_threshold,
    solve_least_squares,
)

__all__ = ["LINKS", "SOLVERS", "LinearRegression", "LogisticRegression", "soft_threshold",
           "solve_least_squares"]

LINKS = ("auto", "sigmoid", "softmax")


class LogisticRegression(Classifier):
    """Logistic regression (Cox, 1958): a linear map followed by a sigmoid (binary,
    one logit) or a softmax (multinomial, one logit per class), trained with
    cross-entropy. Linear decision boundaries: it cannot solve XOR.

    ``link="auto"`` uses the sigmoid when ``num_classes == 2``.
    """

    def __init__(self, *, in_features: int, num_classes: int, link: str = "auto") -> None:
        super().__init__(num_classes)
        if link not in LINKS:
            raise UserError(f"unknown model.link '{link}'; valid: {choices(LINKS)}")
        if link == "sigmoid" and num_classes != 2:
            raise UserError(f"model.link=sigmoid needs 2 classes, the data has {num_classes}")
        binary = link == "sigmoid" or (link == "auto" and num_classes == 2)
        self.linear = nn.Linear(int(in_features), 1 if binary else int(num_classes))
        nn.init.zeros_(self.linear.weight)  # convex problem: zero start is the usual choice
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))  # (B, 1) or (B, C) logits

    def on_train_start(self, data: Any, run_dir: str | None = None) -> None:
        check_flat_input(self.linear.in_features, data)
