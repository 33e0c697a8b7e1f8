"""Problems for local search: N-queens on complete states, a random TSP, and the
Rastrigin function (continuous).

Each is built from ``configs/problem/NAME.yaml``; its ``value`` is maximised, and its
moves are priced without building the neighbour (see :class:`zoo.search.local.LocalProblem`).
"""

from __future__ import annotations

import itertools
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import UserError
from zoo.search.base import SearchResult
from zoo.search.local import LocalProblem


def _figure(size: tuple[float, float] = (6, 6)):
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    from zoo.viz import save_figure

    return save_figure(fig, path)


def _title(result: SearchResult, text: str) -> str:
    """``text``, after the algorithm's name when the caller put one in ``extra["title"]``."""
    name = result.extra.get("title")
    return f"{name}: {text}" if name else text


def _final(result: SearchResult) -> Any:
    if not result.path:
        raise UserError("nothing to draw: the result has no path")
    return result.path[-1]


# --------------------------------------------------------------------------- N-queens
class QueensLocal(LocalProblem):
    """N-queens as a complete-state problem: one queen per column, ``state[c]`` its row;
    a move puts one queen on another row of its column (n(n-1) neighbours); ``value`` is
    minus the attacking pairs, 0 at a goal.

    The queens per row and per diagonal of the last state seen are kept, so a move is
    priced in O(1) (the pairs it makes minus the pairs it breaks), all n(n-1) moves in
    one vectorised O(n^2) pass, and applying a move updates the counts in O(1) (plus the
    tuple copy). A move is the integer ``column * n + row``.
    """

    def __init__(self, n: int = 8) -> None:
        if not isinstance(n, int) or n < 1:
            raise UserError(f"problem.n must be an integer >= 1, got {n}")
        self.n = n
        c = np.arange(n)[:, None]
        r = np.arange(n)[None, :]
        self._diag = (r - c + n - 1).astype(np.intp)     # (n, n): diagonal of (column c, row r)
        self._anti = (r + c).astype(np.intp)             # (n, n): anti-diagonal
        self._key: tuple | None = None
        self._rows: list[int] = []
        self._d1: list[int] = []
        self._d2: list[int] = []
        self._pairs = 0

    # counts of the state last seen
    def _sync(self, state: tuple) -> None:
        if state is self._key or state == self._key:
            return
        n = self.n
        if len(state) != n or any(not 0 <= q < n for q in state):
            raise UserError(f"a {n}-queens state is {n} rows in 0..{n - 1}, got {state}")
        rows, d1, d2 = [0] * n, [0] * (2 * n - 1), [0] * (2 * n - 1)
        for col, row in enumerate(state):
            rows[row] += 1
            d1[row - col + n - 1] += 1
            d2[row + col] += 1
        self._rows, self._d1, self._d2 = rows, d1, d2
        self._pairs = sum(k * (k - 1) // 2 for k in itertools.chain(rows, d1, d2))
        self._key = state

    def random_state(self, rng: random.Random) -> tuple:
        return tuple(rng.randrange(self.n) for _ in range(self.n))

    def value(self, state: tuple) -> float:
        self._sync(state)
        return -self._pairs

    def attacking_pairs(self, state: tuple) -> int:
        return int(-self.value(state))

    def is_goal(self, state: tuple) -> bool:
        return self.value(state) == 0

    def optimal_cost(self) -> float | None:
        return None if self.n in (2, 3) else 0.0

    def moves(self, state: tuple) -> list[int]:
        n = self.n
        return [c * n + r for c in range(n) for r in range(n) if r != state[c]]

    def delta(self, state: tuple, move: int) -> float:
        self._sync(state)
        n = self.n
        c, r = divmod(int(move), n)
        r0 = state[c]
        if r == r0:
            return 0
        new = self._rows[r] + self._d1[r - c + n - 1] + self._d2[r + c]
        old = self._rows[r0] + self._d1[r0 - c + n - 1] + self._d2[r0 + c] - 3
        return old - new

    def move_deltas(self, state: tuple) -> tuple[np.ndarray, np.ndarray]:
        self._sync(state)
        n = self.n
        rows, d1, d2 = np.array(self._rows), np.array(self._d1), np.array(self._d2)
        s = np.array(state)
        new = rows[None, :] + d1[self._diag] + d2[self._anti]          # (n, n) pairs made
        cols = np.arange(n)
        old = rows[s] + d1[s - cols + n - 1] + d2[s + cols] - 3        # (n,) pairs broken
        delta = (old[:, None] - new).ravel().astype(np.float64)
        valid = np.ones(n * n, dtype=bool)
        valid[cols * n + s] = False
        moves = np.flatnonzero(valid)
        return moves, delta[moves]

    def random_move(self, state: tuple, rng: random.Random) -> int:
        c = rng.randrange(self.n)
        r = rng.randrange(self.n - 1)
        return c * self.n + (r + 1 if r >= state[c] else r)

    def apply(self, state: tuple, move: int) -> tuple:
        n = self.n
        c, r = divmod(int(move), n)
        d = self.delta(state, move)        # syncs the counts to ``state``
        r0 = state[c]
        new = state[:c] + (r,) + state[c + 1:]
        rows, d1, d2 = self._rows, self._d1, self._d2
        rows[r0] -= 1
        d1[r0 - c + n - 1] -= 1
        d2[r0 + c] -= 1
        rows[r] += 1
        d1[r - c + n - 1] += 1
        d2[r + c] += 1
        self._pairs -= d
        self._key = new
        return new

    def gene_values(self, position: int) -> range:
        return range(self.n)

    def draw(self, result: SearchResult, path: str | os.PathLike) -> Path:
        """The final board: queens in black, those under attack in red."""
        state = _final(result)
        n = self.n
        fig = _figure((min(12, 2 + 0.3 * n),) * 2)
        ax = fig.add_subplot()
        board = (np.add.outer(np.arange(n), np.arange(n)) % 2).astype(float)
        ax.imshow(board, cmap="Greys", vmin=-2, vmax=3, origin="lower")
        attacked = [any(state[c] == state[o] or abs(state[c] - state[o]) == abs(c - o)
                        for o in range(n) if o != c) for c in range(n)]
        for c, r in enumerate(state):
            ax.scatter([c], [r], s=max(4, 2400 / n), marker="*",
                       c="red" if attacked[c] else "black", zorder=3)
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        pairs = self.attacking_pairs(state)
        ax.set_title(_title(result, f"{n}-queens: {pairs} attacking pairs"
                            f" ({'solved' if pairs == 0 else 'not solved'}),"
                            f" {result.extra.get('steps', '?')} steps"))
        return _save(fig, path)


# --------------------------------------------------------------------------- TSP
class TSP(LocalProblem):
    """A travelling-salesperson tour through ``n`` random cities in the unit square
    (drawn from ``seed``). A state is a permutation of the cities; a move is a 2-opt
    reversal of positions i..j (1 <= i < j <= n-1), which replaces two edges by two
    others, so its change of length needs four distances. ``value`` is minus the tour
    length. Up to ``exact_up_to`` cities the optimum is found by brute force over the
    (n-1)!/2 distinct tours and reaching it is the goal; beyond, there is no goal."""

    genome = "permutation"

    def __init__(self, n: int = 9, seed: int = 0, exact_up_to: int = 9) -> None:
        if not isinstance(n, int) or n < 4:
            raise UserError(f"problem.n must be an integer >= 4 cities, got {n}")
        self.n, self.seed, self.exact_up_to = n, seed, exact_up_to
        g = random.Random(seed)
        self.cities = np.array([[g.random(), g.random()] for _ in range(n)])   # (n, 2)
        diff = self.cities[:, None, :] - self.cities[None, :, :]
        self.dist = np.sqrt((diff ** 2).sum(-1))                                 # (n, n)
        self._d = self.dist.tolist()
        pairs = [(i, j) for i in range(1, n) for j in range(i + 1, n) if (i, j) != (1, n - 1)]
        self._pairs = pairs
        self._i = np.array([p[0] for p in pairs], dtype=np.intp)
        self._j = np.array([p[1] for p in pairs], dtype=np.intp)
        self.has_goal = n <= exact_up_to
        self._optimum: float | None = None

    def length(self, tour: Sequence[int]) -> float:
        d = self._d
        return sum(d[tour[k - 1]][tour[k]] for k in range(len(tour)))

    def random_state(self, rng: random.Random) -> tuple:
        t = list(range(self.n))
        rng.shuffle(t)
        return tuple(t)

    def value(self, state: tuple) -> float:
        if sorted(state) != list(range(self.n)):
            raise UserError(f"a tour is a permutation of 0..{self.n - 1}, got {state}")
        return -self.length(state)

    def brute_force(self) -> tuple[float, tuple]:
        """The shortest tour by enumerating every order of cities 1..n-1 after city 0."""
        rest = np.array(list(itertools.permutations(range(1, self.n))), dtype=np.intp)
        tours = np.concatenate([np.zeros((len(rest), 1), dtype=np.intp), rest], axis=1)
        lengths = self.dist[tours, np.roll(tours, -1, axis=1)].sum(1)
        k = int(np.argmin(lengths))
        return float(lengths[k]), tuple(int(c) for c in tours[k])

    def optimal_cost(self) -> float | None:
        if self.n > self.exact_up_to:
            return None
        if self._optimum is None:
            self._optimum = self.brute_force()[0]
        return self._optimum

    def is_goal(self, state: tuple) -> bool:
        opt = self.optimal_cost()
        return opt is not None and self.length(state) <= opt + 1e-9

    def moves(self, state: tuple) -> list[tuple[int, int]]:
        return list(self._pairs)

    def delta(self, state: tuple, move: tuple[int, int]) -> float:
        i, j = move
        t, d = state, self._d
        a, b, c, e = t[i - 1], t[i], t[j], t[(j + 1) % self.n]
        return (d[a][b] + d[c][e]) - (d[a][c] + d[b][e])

    def move_deltas(self, state: tuple) -> tuple[list, np.ndarray]:
        t = np.array(state)
        a, b = t[self._i - 1], t[self._i]
        c, e = t[self._j], t[(self._j + 1) % self.n]
        D = self.dist
        return self._pairs, (D[a, b] + D[c, e]) - (D[a, c] + D[b, e])

    def random_move(self, state: tuple, rng: random.Random) -> tuple[int, int]:
        return self._pairs[rng.randrange(len(self._pairs))]

    def apply(self, state: tuple, move: tuple[int, int]) -> tuple:
        i, j = move
        return state[:i] + state[i:j + 1][::-1] + state[j + 1:]

    def draw(self, result: SearchResult, path: str | os.PathLike) -> Path:
        """The cities and the final tour, with its length (and the optimum when known)."""
        tour = list(_final(result))
        xy = self.cities[tour + tour[:1]]
        fig = _figure()
        ax = fig.add_subplot()
        ax.plot(xy[:, 0], xy[:, 1], "-", color="tab:blue", label="tour")
        ax.scatter(self.cities[:, 0], self.cities[:, 1], c="black", zorder=3, label="city")
        ax.scatter(*self.cities[tour[0]], c="red", s=80, zorder=4, label="first city")
        opt = self.optimal_cost()
        extra = f", optimum {opt:.4f}" if opt is not None else ""
        ax.set_title(_title(result, f"TSP n={self.n} seed={self.seed}: length "
                                    f"{self.length(tour):.4f}{extra}"))
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_aspect("equal")
        ax.legend(loc="best", fontsize=8)
        return _save(fig, path)


# --------------------------------------------------------------------------- continuous
class Rastrigin(LocalProblem):
    """The Rastrigin function f(x) = A d + sum_i (x_i^2 - A cos 2 pi x_i) on
    [-bound, bound]^d: a bowl covered in local minima at the integer points, the global
    minimum f(0) = 0. ``value`` is -f; a state is a tuple of floats; the goal is
    f < ``goal``. ``gradient`` serves gradient descent; for the discrete algorithms a
    move is a step of ``step`` along one axis (the discretisation of the notes)."""

    def __init__(self, dims: int = 2, bound: float = 5.12, step: float = 0.05,
                 goal: float = 1e-3, a: float = 10.0) -> None:
        if not isinstance(dims, int) or dims < 1:
            raise UserError(f"problem.dims must be an integer >= 1, got {dims}")
        if bound <= 0 or step <= 0 or goal <= 0:
            raise UserError("problem.bound, problem.step and problem.goal must be > 0")
        self.dims, self.bound, self.step, self.goal, self.a = dims, float(bound), step, goal, a

    def f(self, x: Sequence[float]) -> float:
        a = self.a
        return a * len(x) + sum(float(c) * float(c) - a * math.cos(2 * math.pi * float(c)) for c in x)

    def value(self, state: Sequence[float]) -> float:
        return -self.f(state)

    def gradient(self, state: Sequence[float]) -> np.ndarray:
        """The gradient of ``value`` (= -grad f)."""
        x = np.asarray(state, dtype=np.float64)
        return -(2 * x + 2 * np.pi * self.a * np.sin(2 * np.pi * x))

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, -self.bound, self.bound)

    def random_state(self, rng: random.Random) -> tuple:
        return tuple(rng.uniform(-self.bound, self.bound) for _ in range(self.dims))

    def is_goal(self, state: Sequence[float]) -> bool:
        return self.f(state) < self.goal

    def optimal_cost(self) -> float | None:
        return 0.0

    def moves(self, state: tuple) -> list[int]:
        return list(range(2 * self.dims))

    def delta(self, state: tuple, move: int) -> float:
        # one coordinate changes: only its term of the sum does
        axis = int(move) // 2
        x0, x1 = state[axis], self.apply(state, move)[axis]
        term = lambda x: x * x - self.a * math.cos(2 * math.pi * x)
        return term(x0) - term(x1)

    def apply(self, state: tuple, move: int) -> tuple:
        axis, sign = divmod(int(move), 2)
        x = list(state)
        x[axis] = min(self.bound, max(-self.bound, x[axis] + (self.step if sign else -self.step)))
        return tuple(x)

    def gene_values(self, position: int) -> np.ndarray:
        return np.linspace(-self.bound, self.bound, 1025)

    def draw(self, result: SearchResult, path: str | os.PathLike) -> Path:
        """2-D: contours of f with the kept run's trajectory (``trace``) or its start and
        end; other dimensions: f along the trajectory."""
        start, final = result.path[0], _final(result)
        trace = result.extra.get("trace") or [start, final]
        fig = _figure((7, 6))
        ax = fig.add_subplot()
        if self.dims == 2:
            g = np.linspace(-self.bound, self.bound, 300)
            X, Y = np.meshgrid(g, g)
            Z = 2 * self.a + X ** 2 - self.a * np.cos(2 * np.pi * X) + Y ** 2 \
                - self.a * np.cos(2 * np.pi * Y)
            cs = ax.contourf(X, Y, Z, levels=30, cmap="viridis")
            fig.colorbar(cs, ax=ax, label="f(x)")
            xy = np.array(trace)
            ax.plot(xy[:, 0], xy[:, 1], "-", color="white", lw=1, label="trajectory")
            ax.scatter(*start, c="orange", s=60, zorder=3, label="start")
            ax.scatter(*final, c="red", marker="*", s=150, zorder=3, label="final")
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        else:
            ax.plot([self.f(s) for s in trace], label="f along the run")
            ax.set_xlabel("step")
            ax.set_ylabel("f(x)")
        ax.set_title(_title(result, f"Rastrigin d={self.dims}: f = {self.f(final):.4g}"
                            f" ({'solved' if self.is_goal(final) else 'not solved'}),"
                            f" {result.extra.get('restarts', 0)} restarts"))
        ax.legend(loc="upper right", fontsize=8)
        return _save(fig, path)

