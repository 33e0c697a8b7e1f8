"""Informed search: greedy best-first (f = h) and A* (f = g + h).

The heuristic is one of the problem's (``problem.heuristics``), chosen by name
(``heuristic=manhattan``; null takes the problem's first). The notes' theorems, which
the tests check: with an admissible h (never above the true remaining cost) A* is
optimal provided a cheaper path to a closed state reopens it (``reopen=true``); with a
consistent h (h(a) <= cost(a, b) + h(b) on every step, h(goal) = 0) graph-search A* is
optimal and never reopens a state.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from zoo.errors import UserError
from zoo.search.base import Problem, SearchResult, State
from zoo.search.uninformed import Counts, Search, best_first


def heuristic_of(problem: Problem, name: str | None, algo: str) -> tuple[str, Callable[[State], float]]:
    """The problem's heuristic ``name`` (its first when None) as a function of a state."""
    names = tuple(problem.heuristics)
    pname = type(problem).__name__
    if not names:
        raise UserError(f"algo={algo} needs a heuristic and {pname} has none; use an "
                        f"uninformed algorithm (algo=ucs, algo=bfs, ...)")
    if name in (None, "", "null"):
        name = names[0]
    if name not in names:
        raise UserError(f"{pname} has no heuristic '{name}'; its heuristics: {', '.join(names)}")
    return name, lambda s: problem.heuristic(s, name)


class _Informed(Search):
    uses_heuristic = True
    label = ""
    reopen = False

    def prepare(self, problem: Problem) -> None:
        self.heuristic_used, self._h = heuristic_of(problem, self.heuristic, self.label)

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        r = super().solve(problem, rng)
        r.extra["heuristic"] = self.heuristic_used  # also when the search gave up
        return r

    def search(self, problem: Problem, counts: Counts, rng: random.Random) -> SearchResult:
        return best_first(problem, counts, self.f, self._h, self.graph, self.reopen)

    @staticmethod
    def f(g: float, h: float) -> float:
        raise NotImplementedError


class GreedyBestFirst(_Informed):
    """Greedy best-first search: expand the node whose state looks nearest the goal
    (f = h). Complete on finite spaces as graph search; not optimal."""

    label = "greedy"

    @staticmethod
    def f(g: float, h: float) -> float:
        return h


class AStar(_Informed):
    """A* (Hart, Nilsson and Raphael, 1968): best-first on f = g + h. ``reopen`` puts a
    closed state back on the open list when a cheaper path to it turns up, which an
    admissible but inconsistent h needs for optimality."""

    label = "astar"

    def __init__(self, *, reopen: bool = True, **kw: Any) -> None:
        super().__init__(**kw)
        if not isinstance(reopen, bool):
            raise UserError(f"algo.reopen={reopen!r}: expected true or false")
        self.reopen = reopen

    @staticmethod
    def f(g: float, h: float) -> float:
        return g + h
