"""The bandit, game and control tasks refuse predictions of the wrong form, and their
evaluators reduce per-item records the same whatever the batching."""

from __future__ import annotations

import pytest
import torch

from zoo.data.rl import RoundBatch
from zoo.metrics.rl import BanditEvaluator, GameEvaluator, ReturnEvaluator
from zoo.tasks import get_task
from zoo.tasks.base import ModelOutputError


def _batch(n: int, extra: torch.Tensor | None = None) -> RoundBatch:
    return RoundBatch(torch.arange(n), extra if extra is not None else torch.zeros(n, 0))


def _bandit(n: int) -> dict[str, torch.Tensor]:
    return {"step": torch.arange(n), "average_reward": torch.rand(n, dtype=torch.float64),
            "optimal_action_fraction": torch.rand(n, dtype=torch.float64),
            "done": torch.arange(n) < n - 1}


def test_bandit_output_form():
    task = get_task("bandit")
    task.check_output(_bandit(4), _batch(4))
    with pytest.raises(ModelOutputError, match="expected a dict with keys"):
        task.check_output(torch.zeros(4), _batch(4))
    bad = _bandit(4)
    bad["done"] = bad["done"].long()
    with pytest.raises(ModelOutputError, match=r"done must be \(4,\) bool"):
        task.check_output(bad, _batch(4))
    with pytest.raises(ModelOutputError, match=r"step must be \(3,\) int"):
        task.check_output(_bandit(4), _batch(3))
    images = task.images(_batch(4), _bandit(4), {})
    assert set(images) == {"average_reward", "optimal_action"}
    assert all(im.shape[0] == 3 and 0 <= im.min() and im.max() <= 1 for im in images.values())


def test_bandit_evaluator_does_not_depend_on_batching():
    p = _bandit(300)
    whole = BanditEvaluator(last=100)
    whole.update(p, None)
    parts = BanditEvaluator(last=100)
    for i in reversed(range(0, 300, 70)):  # out of order, uneven batches
        parts.update({k: v[i:i + 70] for k, v in p.items()}, None)
    a, b = whole.compute(), parts.compute()
    assert a == b and a["steps"] == 299
    assert a["average_reward"] == pytest.approx(float(p["average_reward"][199:299].mean()), abs=1e-12)


def test_game_output_form_and_rates():
    task = get_task("game")
    batch = _batch(4, torch.tensor([[0, 0, 1], [0, 1, 2], [1, 0, 3], [1, 1, 4]]))
    good = {"opponent": torch.tensor([0, 0, 1, 1]), "result": torch.tensor([1, -1, 0, 0])}
    task.check_output(good, batch)
    with pytest.raises(ModelOutputError, match="result must be 1"):
        task.check_output({**good, "result": torch.tensor([2, 0, 0, 0])}, batch)
    with pytest.raises(ModelOutputError, match=r"opponent must be \(4,\) int64"):
        task.check_output({**good, "opponent": torch.zeros(4)}, batch)
    ev = GameEvaluator()
    ev.update(good, batch)
    out = ev.compute()
    assert next(iter(out)) == "perfect_draw" and out["perfect_draw"] == 1.0
    assert (out["random_win"], out["random_loss"], out["random_no_loss"]) == (0.5, 0.5, 0.5)


def test_control_output_form():
    task = get_task("control")
    batch = _batch(2, torch.tensor([7, 8]))
    good = {"return": torch.tensor([500.0, 20.0]), "env_steps": torch.tensor(1234)}
    task.check_output(good, batch)
    with pytest.raises(ModelOutputError, match="env_steps must be a 0-d int64"):
        task.check_output({**good, "env_steps": torch.tensor([1234])}, batch)
    with pytest.raises(ModelOutputError, match=r"return must be \(2,\) float"):
        task.check_output({**good, "return": torch.tensor([500, 20])}, batch)
    ev = ReturnEvaluator()
    ev.update(good, batch)
    out = ev.compute()
    assert out["mean_return"] == 260.0 and out["solved_fraction"] == 0.5 and out["env_steps"] == 1234
