"""The cadence (when to log, validate, checkpoint, stop) and the best/patience tracker,
without training."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from zoo.engine.cadence import BestTracker, Cadence
from zoo.errors import UserError


def _run(c: Cadence, steps_per_epoch: int) -> dict[str, list[int]]:
    """Which steps do what over a whole run with epochs of ``steps_per_epoch`` steps."""
    out: dict[str, list[int]] = {"log": [], "validate": [], "checkpoint": [], "done": []}
    for step in range(1, c.total_steps + 1):
        ended = step % steps_per_epoch == 0
        p = c.plan(step, epoch_ended=ended, epoch=step // steps_per_epoch)
        for k, steps in out.items():
            if getattr(p, k):
                steps.append(step)
    return out


def test_step_based_schedule():
    c = Cadence(total_steps=20, val_every_steps=6, ckpt_every=8, log_every=5)
    r = _run(c, steps_per_epoch=7)
    assert r["validate"] == [6, 12, 18, 20]  # no epoch validations once val_every_steps is set
    assert r["log"] == [5, 10, 15, 20]
    assert r["checkpoint"] == [6, 8, 12, 16, 18, 20]  # also at each validation
    assert r["done"] == [20]


def test_epoch_based_schedule():
    c = Cadence(total_steps=12, val_every=2, log_every=100)
    r = _run(c, steps_per_epoch=3)
    assert r["validate"] == [6, 12]
    assert r["log"] == [12]
    assert r["checkpoint"] == [6, 12]
    every_epoch = _run(Cadence(total_steps=12), steps_per_epoch=3)
    assert every_epoch["validate"] == [3, 6, 9, 12]


def test_val_every_means_epochs_whatever_sets_the_length():
    """A detector's ``val_every: 4`` stays four epochs when the run is given max_steps."""
    t = OmegaConf.create({"max_steps": 40, "max_epochs": 16, "val_every": 4, "val_every_steps": None,
                          "ckpt_every": None, "log_every": 10})
    c = Cadence.from_config(t, 40)
    assert _run(c, steps_per_epoch=5)["validate"] == [20, 40]
    both = Cadence(total_steps=40, val_every=4, val_every_steps=15)
    assert _run(both, steps_per_epoch=5)["validate"] == [15, 20, 30, 40]


def test_old_run_configs_keep_their_step_validations():
    """Runs written when val_every counted steps in step-based runs have no val_every_steps."""
    old = OmegaConf.create({"max_steps": 2000, "val_every": 500, "ckpt_every": 200, "log_every": 10})
    c = Cadence.from_config(old, 2000)
    assert c.val_every is None and c.val_every_steps == 500
    old_epochs = OmegaConf.create({"max_steps": None, "max_epochs": 16, "val_every": 4})
    assert Cadence.from_config(old_epochs, 160).val_every == 4


def test_skipped_step_only_applies_epoch_rules():
    c = Cadence(total_steps=10, val_every_steps=2, log_every=1)
    p = c.plan(4, stepped=False)
    assert not (p.log or p.validate or p.checkpoint)
    assert Cadence(total_steps=10).plan(4, stepped=False, epoch_ended=True, epoch=1).validate


@pytest.mark.parametrize("key", ["val_every", "val_every_steps", "ckpt_every"])
def test_zero_is_refused(key):
    with pytest.raises(UserError, match=f"trainer.{key}"):
        Cadence(total_steps=10, **{key: 0})


def test_tracker_best_and_patience():
    saved = []
    tr = BestTracker("loss", "min", patience=1, save_best=lambda: saved.append(1))
    assert tr.update({"loss": 3.0}, 1) and tr.update({"loss": 2.0}, 2)
    assert not tr.update({"loss": 2.5}, 3) and not tr.should_stop
    assert not tr.update({"loss": float("nan")}, 4) and tr.should_stop
    assert (tr.value, tr.step, len(saved)) == (2.0, 2, 2)
    again = BestTracker("loss", "min", patience=1)
    again.load_state_dict(tr.state_dict())
    assert again.state_dict() == tr.state_dict() and again.should_stop


def test_tracker_max_mode_picks_first_metric_and_checks_names():
    tr = BestTracker(None, "max")
    assert tr.update({"accuracy": 0.5, "f1": 0.1}, 1) and tr.monitor == "accuracy"
    assert not tr.update({"accuracy": 0.4}, 2)
    assert tr.update({"accuracy": 0.6}, 3) and tr.step == 3
    with pytest.raises(UserError, match="valid choices: f1"):
        BestTracker("map", "max").update({"f1": 1.0}, 1)
    with pytest.raises(UserError, match="max or min"):
        BestTracker("f1", "MAX")
