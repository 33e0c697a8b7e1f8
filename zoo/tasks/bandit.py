"""Bandits: a learner's record of each testbed step, scored as Sutton & Barto's curves.

``predict`` returns, for a batch of step indices (B,), a dict of (B,) tensors: ``step``
(int64), ``average_reward`` and ``optimal_action_fraction`` over the runs (float), and
``done`` (bool: the step was played). The evaluator reports both over the last
``evaluator.last`` steps played (default 100) and the per-step curves; ``evaluate.py
run=DIR`` writes them to metrics.json with ``average_reward.png`` and
``optimal_action.png`` beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from zoo.data.rl import RoundBatch
from zoo.tasks.base import Task, evaluator_spec, shape_of

FIELDS = {"step": "int", "average_reward": "float", "optimal_action_fraction": "float",
          "done": "bool"}


class BanditTask(Task):
    name = "bandit"
    title = "bandit learners"
    evaluator_keys: ClassVar[dict[str, str]] = {"last": "steps at the end averaged (default 100)"}

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.rl import BanditEvaluator

        s = evaluator_spec(spec, self.evaluator_keys, self.name)
        return BanditEvaluator(last=int(s.get("last", 100)), label=model.label())

    def check_output(self, predictions: Any, batch: Any) -> None:
        n = len(RoundBatch.of(batch).index)
        if not isinstance(predictions, Mapping) or set(predictions) != set(FIELDS):
            raise self.fail(f"expected a dict with keys {', '.join(FIELDS)}, got "
                            f"{sorted(predictions) if isinstance(predictions, Mapping) else shape_of(predictions)}")
        for k, kind in FIELDS.items():
            v = predictions[k]
            ok = isinstance(v, torch.Tensor) and v.shape == (n,) and {
                "int": not v.is_floating_point() and v.dtype != torch.bool,
                "float": v.is_floating_point(), "bool": v.dtype == torch.bool}[kind]
            if not ok:
                raise self.fail(f"{k} must be ({n},) {kind}, got {shape_of(v)}")

    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        from zoo.metrics.rl import plot_curves

        done = predictions["done"].cpu()
        if not bool(done.any()):
            return {}
        order = torch.argsort(predictions["step"].cpu()[done])
        reward = predictions["average_reward"].cpu()[done][order].numpy()
        optimal = predictions["optimal_action_fraction"].cpu()[done][order].numpy()
        return {"average_reward": plot_curves({"learner": reward}, None, xlabel="step",
                                              ylabel="average reward"),
                "optimal_action": plot_curves({"learner": optimal}, None, xlabel="step",
                                              ylabel="optimal action", percent=True,
                                              ylim=(0, 100))}
