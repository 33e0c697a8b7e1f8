"""Games and control: a learner scored by playing, not by matching labels.

**game** (tic-tac-toe): the validation split lists evaluation games (``RoundBatch``:
index, [opponent, side, seed]); ``predict`` plays them and returns a dict of (B,) int64
tensors ``opponent`` (0 random, 1 perfect) and ``result`` (1 win, 0 draw, -1 loss of
the learner). The evaluator reports win/draw/loss rates against each opponent.

**control** (CartPole): the validation split lists evaluation episode seeds;
``predict`` runs the greedy policy for one episode per seed and returns ``return``
(B,) float and ``env_steps``, a 0-d int64 tensor: the environment steps the learner had
trained on. The evaluator reports the mean return (and the solved fraction, >= 475).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from zoo.data.rl import RoundBatch
from zoo.tasks.base import Task, evaluator_spec, shape_of


def _check_dict(task: Task, predictions: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(predictions, Mapping) or set(predictions) != set(keys):
        got = sorted(predictions) if isinstance(predictions, Mapping) else shape_of(predictions)
        raise task.fail(f"expected a dict with keys {', '.join(keys)}, got {got}")


class GameTask(Task):
    name = "game"
    title = "game players"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.data.rl import OPPONENTS
        from zoo.metrics.rl import GameEvaluator

        evaluator_spec(spec, self.evaluator_keys, self.name)
        return GameEvaluator(OPPONENTS)

    def check_output(self, predictions: Any, batch: Any) -> None:
        n = len(RoundBatch.of(batch).index)
        _check_dict(self, predictions, ("opponent", "result"))
        for k in ("opponent", "result"):
            v = predictions[k]
            if not (isinstance(v, torch.Tensor) and v.shape == (n,) and v.dtype == torch.int64):
                raise self.fail(f"{k} must be ({n},) int64, got {shape_of(v)}")
        r = predictions["result"]
        if bool(((r < -1) | (r > 1)).any()):
            raise self.fail("result must be 1 (win), 0 (draw) or -1 (loss)")

    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        from zoo.data.rl import OPPONENTS
        from zoo.metrics.rl import GameEvaluator, plot_results

        ev = GameEvaluator(OPPONENTS)
        ev.update(predictions, batch)
        return {"results": plot_results(ev.rates(), None)}


class ControlTask(Task):
    name = "control"
    title = "control policies"
    evaluator_keys: ClassVar[dict[str, str]] = {"solved": "return that counts as solved (default 475)"}

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.rl import ReturnEvaluator

        s = evaluator_spec(spec, self.evaluator_keys, self.name)
        return ReturnEvaluator(solved=float(s.get("solved", 475.0)))

    def check_output(self, predictions: Any, batch: Any) -> None:
        n = len(RoundBatch.of(batch).index)
        _check_dict(self, predictions, ("return", "env_steps"))
        r, e = predictions["return"], predictions["env_steps"]
        if not (isinstance(r, torch.Tensor) and r.shape == (n,) and r.is_floating_point()):
            raise self.fail(f"return must be ({n},) float, got {shape_of(r)}")
        if not (isinstance(e, torch.Tensor) and e.shape == () and e.dtype == torch.int64):
            raise self.fail(f"env_steps must be a 0-d int64 tensor, got {shape_of(e)}")

    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        from zoo.metrics.rl import plot_curves

        return {"returns": plot_curves({"policy": predictions["return"].cpu().numpy()}, None,
                                       xlabel="evaluation episode", ylabel="return",
                                       ylim=(0, 510))}
