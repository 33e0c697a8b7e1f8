"""When to log, validate, checkpoint and stop; and the best checkpoint with patience.

Both are plain objects with no training inside, so every schedule can be unit-tested.

Units (``configs/trainer/default.yaml``):
- ``val_every`` counts epochs, whatever decides the run's length (null: every epoch,
  unless ``val_every_steps`` is set);
- ``val_every_steps`` counts optimizer steps (null: off);
- ``ckpt_every`` and ``log_every`` count optimizer steps.
There is always a validation, a log line and a ``last.pt`` at the last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zoo.errors import UserError


@dataclass(frozen=True)
class Plan:
    """What the trainer does once a step (or an epoch end) is done."""

    log: bool = False
    validate: bool = False
    checkpoint: bool = False
    done: bool = False  # the last step of the run

    @property
    def needs_host(self) -> bool:
        """True when the trainer reads values back from the device (a sync point)."""
        return self.log or self.validate or self.checkpoint or self.done


@dataclass(frozen=True)
class Cadence:
    total_steps: int
    val_every: int | None = None        # epochs
    val_every_steps: int | None = None  # optimizer steps
    ckpt_every: int | None = None       # optimizer steps
    log_every: int = 1                  # optimizer steps

    def __post_init__(self) -> None:
        for key in ("val_every", "val_every_steps", "ckpt_every"):
            v = getattr(self, key)
            if v is not None and int(v) < 1:
                raise UserError(f"trainer.{key} must be a positive integer or null, got {v}")
        if int(self.log_every) < 1:
            raise UserError(f"trainer.log_every must be >= 1, got {self.log_every}")

    @classmethod
    def from_config(cls, t: Any, total_steps: int) -> Cadence:
        val_every, val_every_steps = t.get("val_every"), t.get("val_every_steps")
        if "val_every_steps" not in t and t.get("max_steps") is not None:
            # a run directory written when val_every counted steps in step-based runs
            val_every, val_every_steps = None, val_every
        return cls(total_steps=int(total_steps),
                   val_every=_opt_int(val_every), val_every_steps=_opt_int(val_every_steps),
                   ckpt_every=_opt_int(t.get("ckpt_every")) or None,
                   log_every=int(t.get("log_every") or 1))

    def plan(self, step: int, *, stepped: bool = True, epoch_ended: bool = False,
             epoch: int = 0) -> Plan:
        """The plan after optimizer step ``step`` (1-based count of steps done).

        ``stepped``: False for a window whose step was skipped (non-finite loss), so only
        the epoch rules apply. ``epoch_ended``: this window finished an epoch; ``epoch``
        is then the number of epochs done.
        """
        done = step >= self.total_steps
        on_step = stepped and step > 0
        validate = done or (on_step and self.val_every_steps is not None
                            and step % self.val_every_steps == 0)
        if epoch_ended:
            if self.val_every is not None:
                validate = validate or epoch % self.val_every == 0
            elif self.val_every_steps is None:
                validate = True
        log = on_step and (step % self.log_every == 0 or done)
        checkpoint = done or validate or (on_step and self.ckpt_every is not None
                                          and step % self.ckpt_every == 0)
        return Plan(log=log, validate=validate, checkpoint=checkpoint, done=done)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


class BestTracker:
    """The best value of ``monitor`` so far (``best.pt``) and validations without improvement.

    ``update(metrics)`` returns True when the value improved (the caller then writes
    ``best.pt`` through ``save_best``); ``should_stop`` is True after more than
    ``patience`` validations without improvement.
    """

    def __init__(self, monitor: str | None, mode: str = "max", patience: int | None = None,
                 save_best: Callable[[], None] | None = None) -> None:
        if mode not in ("max", "min"):
            raise UserError(f"trainer.mode must be max or min, got '{mode}'")
        if patience is not None and int(patience) < 0:
            raise UserError(f"trainer.patience must be >= 0 or null, got {patience}")
        self.monitor, self.mode = monitor, mode
        self.patience = None if patience is None else int(patience)
        self.save_best = save_best
        self.value: float | None = None
        self.step: int | None = None
        self.bad = 0

    def update(self, nums: dict[str, float], step: int) -> bool:
        if self.monitor is None:
            if not nums:
                raise UserError("the evaluator returned no numeric metric to monitor")
            self.monitor = next(iter(nums))
        if self.monitor not in nums:
            raise UserError(f"trainer.monitor '{self.monitor}' is not a validation metric; "
                            f"valid choices: {', '.join(nums)}")
        value = nums[self.monitor]
        better = math.isfinite(value) and (
            self.value is None or (value > self.value if self.mode == "max" else value < self.value))
        if better:
            self.value, self.step, self.bad = value, step, 0
            if self.save_best is not None:
                self.save_best()
        else:
            self.bad += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad > self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "value": self.value, "step": self.step,
                "bad_validations": self.bad}

    def load_state_dict(self, b: dict[str, Any]) -> None:
        self.monitor, self.value, self.step = b["monitor"], b["value"], b["step"]
        self.bad = int(b["bad_validations"])
