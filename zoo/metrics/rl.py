"""Evaluators of reinforcement learners: bandit curves, game results, episode returns.

Each keeps the per-item records it is given (a step's averages, a game's result, an
episode's return) and reduces them only in ``compute``, so the numbers do not depend on
the batch size or the number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from zoo.metrics.base import Evaluator


# -- pictures ---------------------------------------------------------------------------------
def plot_curves(curves: Mapping[str, Sequence[float]], path: str | os.PathLike | None, *,
                xlabel: str, ylabel: str, title: str = "", x: Mapping[str, Sequence[float]] | None = None,
                ylim: tuple[float, float] | None = None, percent: bool = False,
                hline: float | None = None) -> Any:
    """One labelled line per entry of ``curves`` (x: 1..n, or ``x[name]``) with a legend.
    Written to ``path`` as PNG; without a path, returned as a (3, H, W) image in [0, 1]."""
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for name, ys in curves.items():
        ys = np.asarray(ys, dtype=np.float64) * (100 if percent else 1)
        xs = np.asarray(x[name]) if x is not None else np.arange(1, len(ys) + 1)
        ax.plot(xs, ys, label=name, linewidth=1.2)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (" (%)" if percent else ""))
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    from zoo.viz import figure_image, save_figure

    return save_figure(fig, path) if path is not None else figure_image(fig)


# -- bandits ----------------------------------------------------------------------------------
class BanditEvaluator(Evaluator):
    """Per-step records (``step``, ``average_reward``, ``optimal_action_fraction``,
    ``done``) -> the two curves over the steps played, and their means over the last
    ``last`` steps (``average_reward``, ``optimal_action_fraction``)."""

    state_keys = ("records",)

    def __init__(self, last: int = 100, label: str = "learner") -> None:
        self.last, self.label = int(last), str(label)
        super().__init__()

    def reset(self) -> None:
        self.records: list[tuple[torch.Tensor, ...]] = []

    def update(self, predictions: Mapping[str, torch.Tensor], batch: Any) -> None:
        p = predictions
        self.records.append(tuple(p[k].detach().cpu() for k in
                                  ("step", "average_reward", "optimal_action_fraction", "done")))

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps played (S,), average reward (S,), optimal-action fraction (S,), by step."""
        if not self.records:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        step, reward, optimal, done = (torch.cat([r[i] for r in self.records]) for i in range(4))
        order = torch.argsort(step)
        keep = order[done[order]]
        return step[keep].numpy(), reward[keep].double().numpy(), optimal[keep].double().numpy()

    def compute(self) -> dict[str, Any]:
        steps, reward, optimal = self.curves()
        tail = slice(max(len(steps) - self.last, 0), None)
        return {
            "average_reward": float(reward[tail].mean()) if len(steps) else 0.0,
            "optimal_action_fraction": float(optimal[tail].mean()) if len(steps) else 0.0,
            "steps": len(steps),
            "curves": {"average_reward": reward.tolist(),
                       "optimal_action_fraction": optimal.tolist()},
        }

    def save_plots(self, directory: str | os.PathLike) -> list[Path]:
        steps, reward, optimal = self.curves()
        if not len(steps):
            return []
        d = Path(directory)
        return [plot_curves({self.label: reward}, d / "average_reward.png", xlabel="step",
                            ylabel="average reward", title="Average reward over runs"),
                plot_curves({self.label: optimal}, d / "optimal_action.png", xlabel="step",
                            ylabel="optimal action", percent=True, ylim=(0, 100),
                            title="Runs choosing an optimal action")]


# -- games ------------------------------------------------------------------------------------
class GameEvaluator(Evaluator):
    """Per-game records (opponent name, result: 1 win, 0 draw, -1 loss of the learner) ->
    ``<opponent>_win``, ``_draw``, ``_loss`` rates, and ``<opponent>_no_loss``. The first
    number is ``perfect_draw`` (draws against a perfect player: the most a learner can do)."""

    state_keys = ("games",)

    def __init__(self, opponents: Sequence[str] = ("random", "perfect")) -> None:
        self.opponents = tuple(opponents)
        super().__init__()

    def reset(self) -> None:
        self.games: list[tuple[int, int]] = []  # (opponent id, result)

    def update(self, predictions: Mapping[str, torch.Tensor], batch: Any) -> None:
        for o, r in zip(predictions["opponent"].tolist(), predictions["result"].tolist()):
            self.games.append((int(o), int(r)))

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        order = [1, 0] + list(range(2, len(self.opponents)))  # perfect first: the headline
        for o in order:
            if o >= len(self.opponents):
                continue
            name = self.opponents[o]
            res = [r for oo, r in self.games if oo == o]
            n = max(len(res), 1)
            if name == "perfect":
                out[f"{name}_draw"] = sum(r == 0 for r in res) / n
            out.update({f"{name}_win": sum(r == 1 for r in res) / n,
                        f"{name}_draw": sum(r == 0 for r in res) / n,
                        f"{name}_loss": sum(r == -1 for r in res) / n,
                        f"{name}_no_loss": sum(r >= 0 for r in res) / n,
                        f"{name}_games": len(res)})
        return out

    def rates(self) -> dict[str, tuple[float, float, float]]:
        out = self.compute()
        return {n: (out[f"{n}_win"], out[f"{n}_draw"], out[f"{n}_loss"])
                for n in self.opponents if f"{n}_win" in out}

    def save_plots(self, directory: str | os.PathLike) -> list[Path]:
        if not self.games:
            return []
        return [plot_results(self.rates(), Path(directory) / "results.png")]


# -- episodes ---------------------------------------------------------------------------------
class ReturnEvaluator(Evaluator):
    """Per-episode returns -> ``mean_return``, ``std_return``, ``min_return``, and the
    fraction of episodes that reached ``solved`` (475 for CartPole-v1)."""

    state_keys = ("returns", "env_steps")

    def __init__(self, solved: float = 475.0) -> None:
        self.solved = float(solved)
        super().__init__()

    def reset(self) -> None:
        self.returns: list[float] = []
        self.env_steps: list[int] = []

    def update(self, predictions: Mapping[str, torch.Tensor], batch: Any) -> None:
        self.returns += [float(r) for r in predictions["return"].tolist()]
        self.env_steps.append(int(predictions["env_steps"]))

    def compute(self) -> dict[str, Any]:
        r = np.asarray(self.returns, dtype=np.float64)
        if not len(r):
            return {"mean_return": 0.0, "episodes": 0}
        return {"mean_return": float(r.mean()), "std_return": float(r.std()),
                "min_return": float(r.min()), "solved_fraction": float((r >= self.solved).mean()),
                "episodes": len(r),
                # environment steps the learner had trained on when it was scored
                "env_steps": max(self.env_steps) if self.env_steps else 0}


def plot_results(rates: Mapping[str, tuple[float, float, float]], path: str | os.PathLike | None,
                 title: str = "Results of the learner") -> Any:
    """Stacked win/draw/loss bars, one per opponent (``rates[name] = (win, draw, loss)``).
    Written to ``path`` as PNG; without a path, returned as a (3, H, W) image in [0, 1]."""
    fig = Figure(figsize=(5, 3))
    ax = fig.add_subplot()
    names = list(rates)
    bottom = np.zeros(len(names))
    for i, (label, colour) in enumerate((("win", "tab:green"), ("draw", "tab:grey"),
                                         ("loss", "tab:red"))):
        vals = np.asarray([100 * rates[n][i] for n in names])
        ax.bar(names, vals, bottom=bottom, label=label, color=colour)
        bottom += vals
    ax.set_ylabel("games (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    from zoo.viz import figure_image, save_figure

    return save_figure(fig, path) if path is not None else figure_image(fig)
