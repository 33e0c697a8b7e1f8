"""The interfaces every problem and algorithm of ``solve.py`` follows.

Incremental search models a problem as the course does: an initial state, the actions
available in a state, a transition model, a goal test and a step cost. Local search
works on complete states: a random start, the neighbours of a state and its value (the
objective to maximise; ``is_goal`` says when a state solves the problem). A problem may
implement both (N-queens).

An algorithm is a class built from its config (``configs/algo/NAME.yaml``, ``_target_``
plus keyword arguments) whose ``solve(problem, rng) -> SearchResult`` runs it once.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from zoo.registry import buildable

State = Hashable
Action = Any


@buildable
class Problem:
    """A problem for incremental search. Subclasses build from their config keys."""

    def initial_state(self) -> State:
        raise NotImplementedError

    def actions(self, state: State) -> Iterable[Action]:
        raise NotImplementedError

    def result(self, state: State, action: Action) -> State:
        raise NotImplementedError

    def is_goal(self, state: State) -> bool:
        raise NotImplementedError

    def step_cost(self, state: State, action: Action, next_state: State) -> float:
        return 1.0

    def heuristic(self, state: State, name: str) -> float:
        """The heuristic ``name`` (``manhattan``, ``misplaced``, ...) at ``state``; a
        problem lists its names in ``heuristics``."""
        raise NotImplementedError

    heuristics: tuple[str, ...] = ()

    def goal_state(self) -> State | None:
        """The one goal state when the goal test names a single state (bidirectional search
        starts its backward half there); None when the goal is a property (N-queens)."""
        return None

    def predecessors(self, state: State) -> Iterable[State]:
        """The states with an action leading to ``state`` (the backward half of
        bidirectional search); a problem whose actions are reversible returns its
        successors."""
        raise NotImplementedError

    def optimal_cost(self) -> float | None:
        """The true optimum when it is known cheaply (None otherwise): ``result.json``'s
        ``optimal`` compares against it."""
        return None

    # -- local search (complete states) ----------------------------------------------
    def random_state(self, rng: random.Random) -> State:
        raise NotImplementedError

    def neighbours(self, state: State) -> Iterable[State]:
        raise NotImplementedError

    def random_neighbour(self, state: State, rng: random.Random) -> State:
        return rng.choice(list(self.neighbours(state)))

    def value(self, state: State) -> float:
        """The objective local search maximises (e.g. minus the attacking pairs)."""
        raise NotImplementedError

    # -- pictures ------------------------------------------------------------------------
    def draw(self, result: SearchResult, path: Any) -> None:
        """A labelled PNG of the solution (or the expansion order) at ``path``; default none."""


@dataclass
class SearchResult:
    """What one run of an algorithm reports; ``result.json`` holds these fields."""

    path: list[Any] | None            # states from the start to the goal (None: no solution)
    cost: float | None
    expanded: int = 0                 # nodes taken off the frontier and expanded
    generated: int = 0                # nodes created (children added or considered)
    max_frontier: int = 0
    seconds: float = 0.0
    solved: bool = False
    optimal: bool | None = None       # cost equals the problem's known optimum
    extra: dict[str, Any] = field(default_factory=dict)  # algorithm-specific (restarts, steps, ...)
    # The first states expanded, in order (capped), for pictures of the expansion order;
    # not part of result.json.
    trace: list[Any] | None = field(default=None, repr=False)


@buildable
class Algorithm:
    """A search or local-search algorithm; ``solve`` runs it once on ``problem``."""

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        raise NotImplementedError
