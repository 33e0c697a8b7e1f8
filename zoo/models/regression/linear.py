"""Least-squares linear regression: closed form, ridge, gradient descent and the lasso."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.batches import inputs_of, labels_of
from zoo.errors import UserError, choices
from zoo.models.base import ZooModel
from zoo.models.classification.base import check_flat_input

SOLVERS = ("closed_form", "gd")


def solve_least_squares(x: torch.Tensor, y: torch.Tensor, l2: float = 0.0,
                        fit_intercept: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (F,) and bias () minimising ``|X w + b - y|^2 + l2 |w|^2``.

    With A = [X, 1] the minimiser solves the normal equations
    ``(A^T A + l2 D) [w; b] = A^T y``, D = diag(1, ..., 1, 0): the intercept is not
    shrunk (as in scikit-learn's Ridge). For l2 > 0 the matrix is positive definite
    even with more features than samples; for l2 = 0 and a rank-deficient A (F + 1 >
    N, or collinear features) it is singular, and the minimum-norm solution is taken
    from the pseudo-inverse (what ``numpy.linalg.lstsq`` returns). Solved in float64.
    """
    x64, y64 = x.double().reshape(len(x), -1), y.double().reshape(-1)
    n, f = x64.shape
    a = torch.cat([x64, torch.ones(n, 1, dtype=torch.float64)], 1) if fit_intercept else x64
    gram = a.T @ a  # (F+1, F+1)
    rhs = a.T @ y64  # (F+1,)
    if l2 > 0:
        d = torch.ones(a.shape[1], dtype=torch.float64)
        if fit_intercept:
            d[-1] = 0.0
        theta = torch.linalg.solve(gram + l2 * torch.diag(d), rhs)
    elif int(torch.linalg.matrix_rank(a)) == a.shape[1]:
        theta = torch.linalg.solve(gram, rhs)
    else:
        theta = torch.linalg.pinv(a) @ y64
    w = theta[:f]
    b = theta[f] if fit_intercept else torch.zeros((), dtype=torch.float64)
    return w, b


def soft_threshold(w: torch.Tensor, threshold: float) -> torch.Tensor:
    """The proximal operator of ``threshold * |w|_1``: shrink towards 0, exactly 0 inside."""
    return w.sign() * (w.abs() - threshold).clamp(min=0)


class LinearRegression(ZooModel):
    """Least-squares linear regression ``y = w.x + b`` (Legendre 1805, Gauss 1809).

    ``solver="closed_form"`` solves the normal equations once over the training split
    before training (ridge when ``l2 > 0``), so the trainer runs no optimizer step.
    ``solver="gd"`` minimises the same objective by gradient descent; ``l1 > 0`` adds
    the lasso penalty (Tibshirani, 1996) through a proximal soft-threshold step after
    each optimizer step, which makes the weights of useless features exactly zero.

    The objective is ``(1/N) (|X w + b - y|^2 + l2 |w|^2) + (l1/N) |w|_1`` over the N
    training samples, so ``l2`` is scikit-learn's ``Ridge(alpha=l2)`` and ``l1`` is
    ``Lasso(alpha=l1 / (2 N))``.
    """

    task = "regression"

    def __init__(self, *, in_features: int, solver: str = "closed_form", l2: float = 0.0,
                 l1: float = 0.0, fit_intercept: bool = True) -> None:
        super().__init__()
        if solver not in SOLVERS:
            raise UserError(f"unknown model.solver '{solver}'; valid: {choices(SOLVERS)}")
        if l1 < 0 or l2 < 0:
            raise UserError(f"model.l1={l1} and model.l2={l2} must be non-negative")
        if l1 > 0 and solver == "closed_form":
            raise UserError("the lasso (model.l1 > 0) has no closed form; use model.solver=gd")
        self.solver, self.l1, self.l2 = solver, float(l1), float(l2)
        self.fit_intercept = bool(fit_intercept)
        self.linear = nn.Linear(int(in_features), 1, bias=self.fit_intercept)
        nn.init.zeros_(self.linear.weight)
        if self.fit_intercept:
            nn.init.zeros_(self.linear.bias)
        # Training-set size N scales the penalties per sample; set by on_train_start and
        # kept in checkpoints so a resumed run optimises the same objective.
        self.register_buffer("num_train", torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))[:, 0]  # (B,)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {} if self.solver == "closed_form" else {"main": list(self.parameters())}

    def on_train_start(self, data: Any, run_dir: str | None = None) -> None:
        check_flat_input(self.linear.in_features, data)
        x, y = _stack_split(data.dataset("train"))
        self.num_train.fill_(len(x))
        if self.solver == "closed_form":
            self.fit_closed_form(x, y)

    @torch.no_grad()
    def fit_closed_form(self, x: torch.Tensor, y: torch.Tensor) -> None:
        w, b = solve_least_squares(x, y, self.l2, self.fit_intercept)
        self.linear.weight.copy_(w[None].to(self.linear.weight))
        if self.fit_intercept:
            self.linear.bias.copy_(b.reshape(1).to(self.linear.bias))

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        x, y = inputs_of(batch), labels_of(batch).float()
        out = {"loss_mse": F.mse_loss(self(x), y)}
        if self.l2 > 0:
            out["loss_l2"] = self.l2 * self.linear.weight.pow(2).sum() / self.num_train
        return out

    @torch.no_grad()
    def on_after_step(self, group: str, lr: float) -> None:
        # Proximal gradient (ISTA): after the gradient step on the smooth part, apply
        # prox of lr * (l1/N) |w|_1. Only plain SGD makes this exact; the bias is free.
        if self.l1 > 0:
            w = self.linear.weight
            w.copy_(soft_threshold(w, lr * self.l1 / float(self.num_train)))

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self(inputs_of(batch))


def _stack_split(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """All (x, y) of a map-style dataset as two tensors (tabular data fits in memory)."""
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None and len(tensors) == 2:
        return tensors[0], tensors[1]
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.stack([torch.as_tensor(v) for v in ys])
