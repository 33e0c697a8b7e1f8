"""Assertions several test modules share (imported as ``tests.helpers``; conftest puts
the repository root on the path)."""

from __future__ import annotations

from typing import Any


def one_line_error(capsys: Any) -> str:
    """What the command printed on stderr, asserted to be one ``error: ...`` line with no
    traceback: the form of every mistake a person can make."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def overfit(model, batch, steps: int, lr: float = 2e-3) -> None:
    """Adam on one batch for ``steps`` steps through ``training_step``, then eval mode:
    the overfit-one-scene tests of the detectors."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        model.train()
        loss = sum(model.training_step(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
