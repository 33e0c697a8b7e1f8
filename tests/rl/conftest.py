"""Helpers of the reinforcement-learning tests: a stand-in for the trainer's step handle."""

from __future__ import annotations

from typing import Any

import pytest


class Handle:
    """What a manual training_step drives; records logs and runs one optimizer."""

    def __init__(self, optimizer: Any = None) -> None:
        self.optimizer = optimizer
        self.logs: dict[str, list[float]] = {}

    def forward(self, fn: Any, *args: Any) -> Any:
        return fn(*args)

    def backward(self, losses: Any, group: str) -> None:
        total = losses if not isinstance(losses, dict) else sum(
            v for k, v in losses.items() if not k.startswith("log_"))
        total.backward()

    def step(self, group: str) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def log(self, name: str, value: Any) -> None:
        self.logs.setdefault(name, []).append(float(value))


@pytest.fixture
def handle() -> Handle:
    return Handle()
