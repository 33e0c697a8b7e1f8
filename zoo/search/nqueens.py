"""N-queens as incremental search: queens are placed one column at a time, left to
right, each on a row no earlier queen attacks (the formulation that keeps the space
small: 2,057 states for n = 8 instead of 1.8e14 for any placement)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zoo.errors import UserError
from zoo.search.base import Problem, SearchResult, State


class NQueens(Problem):
    """Place ``n`` queens on an n x n board so that none attacks another. A state is the
    tuple of rows of the queens in columns 0, 1, ...; every step costs 1, so every
    solution costs n."""

    def __init__(self, *, n: int = 8) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
            raise UserError(f"problem.n={n!r}: expected a board size from 1 to 1000")
        self.n = n

    @staticmethod
    def attacks(r1: int, c1: int, r2: int, c2: int) -> bool:
        return r1 == r2 or abs(r1 - r2) == abs(c1 - c2)

    def initial_state(self) -> State:
        return ()

    def actions(self, state: State) -> Iterable[int]:
        c = len(state)
        if c == self.n:
            return []
        return [r for r in range(self.n)
                if not any(self.attacks(r, c, qr, qc) for qc, qr in enumerate(state))]

    def result(self, state: State, action: int) -> State:
        return (*state, action)

    def is_goal(self, state: State) -> bool:
        return len(state) == self.n

    def random_state(self, rng: Any) -> State:
        # local search needs complete states: the same puzzle in that form is its own problem
        raise UserError("problem=nqueens is N-queens as incremental search (queens placed one "
                        "by one); local search runs on complete boards: use problem=queens_local")

    def optimal_cost(self) -> float | None:
        return None if self.n in (2, 3) else float(self.n)  # no solution for n = 2, 3

    def draw(self, result: SearchResult, path: Any) -> None:
        from matplotlib.patches import Patch

        from zoo.search.problems import _figure, _rect, _save, _title

        n = self.n
        queens = result.path[-1] if result.path else ()
        side = min(max(3.0, 0.4 * n), 12.0)
        fig = _figure(side, side + 0.5)
        ax = fig.add_subplot()
        for r in range(n):
            for c in range(n):
                ax.add_patch(_rect(c, n - 1 - r, "wheat" if (r + c) % 2 else "saddlebrown"))
        for c, r in enumerate(queens):
            ax.text(c + 0.5, n - 0.5 - r, "\u265b", ha="center", va="center",
                    fontsize=max(4, 200 // n), color="k")
        ax.set_xlim(0, n)
        ax.set_ylim(0, n)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(handles=[Patch(color="k", label=f"queen ({len(queens)} placed)")],
                  loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=8)
        ax.set_title(_title(result, f"{n}-queens"), fontsize=9)
        _save(fig, path)
