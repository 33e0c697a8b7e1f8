"""Tic-tac-toe: a state-value table learned by self-play, and the players it is scored against.

Sutton & Barto, Reinforcement Learning (2nd ed.), section 1.5. Each player keeps a table
V(s) of the probability of winning from the position s left after its own move: 1 where
it has three in a row, 0 where the opponent has, 0.5 everywhere else (draws included).
It moves greedily (to the afterstate of highest value, ties at random), except with
probability ``epsilon`` to a random afterstate (an exploratory move). After each greedy
move the value of its previous afterstate is moved toward the value of the new one,
V(S) <- V(S) + alpha [gamma V(S') - V(S)]; exploratory moves teach nothing. When the
game ends, the player who did not make the last move moves its last afterstate toward
the final position's value (0 for a loss, 0.5 for a draw). ``gamma`` < 1 discounts: of
two winning lines the shorter is worth more.

Positions are numbered by the base-3 number of their nine cells (0 empty, 1 X, 2 O;
cell i weighs 3^i). The 5,478 positions reachable from the empty board, their moves,
and the minimax value of each are computed once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.data.rl import RoundBatch
from zoo.errors import UserError
from zoo.models.base import ZooModel

CELLS = 9
NUM_STATES = 3 ** CELLS
LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
POW3 = tuple(3 ** i for i in range(CELLS))


def winner(board: tuple[int, ...]) -> int:
    """1 (X) or 2 (O) with three in a row, else 0."""
    for a, b, c in LINES:
        if board[a] and board[a] == board[b] == board[c]:
            return board[a]
    return 0


def encode(board: tuple[int, ...]) -> int:
    return sum(v * p for v, p in zip(board, POW3))


def decode(index: int) -> tuple[int, ...]:
    return tuple((index // p) % 3 for p in POW3)


@dataclass(frozen=True)
class Game:
    """The reachable positions: ``children[s]`` (move, next position) pairs (empty when
    ``s`` is terminal), ``outcome[s]`` (0 game on, 1 X won, 2 O won, 3 draw), and
    ``value[s]`` the minimax value for the player to move (+1 win, 0 draw, -1 loss)."""

    children: dict[int, list[tuple[int, int]]]
    outcome: dict[int, int]
    value: dict[int, int]

    def to_move(self, s: int) -> int:
        """0 (X) or 1 (O): X moves when the counts are equal."""
        b = decode(s)
        return 0 if b.count(1) == b.count(2) else 1

    def perfect_moves(self, s: int) -> list[int]:
        """Next positions of every optimal move from ``s`` (minimax)."""
        return [c for _m, c in self.children[s] if -self.value[c] == self.value[s]]


@lru_cache(maxsize=1)
def game() -> Game:
    children: dict[int, list[tuple[int, int]]] = {}
    outcome: dict[int, int] = {}
    stack = [tuple([0] * CELLS)]
    while stack:
        board = stack.pop()
        s = encode(board)
        if s in children:
            continue
        w = winner(board)
        full = 0 not in board
        outcome[s] = w if w else (3 if full else 0)
        kids: list[tuple[int, int]] = []
        if not outcome[s]:
            mark = 1 if board.count(1) == board.count(2) else 2
            for m in range(CELLS):
                if board[m] == 0:
                    nxt = board[:m] + (mark,) + board[m + 1:]
                    kids.append((m, encode(nxt)))
                    stack.append(nxt)
        children[s] = kids

    value: dict[int, int] = {}

    def solve(s: int) -> int:  # for the player to move at s
        if s not in value:
            o = outcome[s]
            if o == 3:
                value[s] = 0
            elif o:
                value[s] = -1  # the previous mover made three in a row
            else:
                value[s] = max(-solve(c) for _m, c in children[s])
        return value[s]

    solve(0)
    return Game(children, outcome, value)


def initial_values() -> torch.Tensor:
    """(2, 3^9) float64: V[p, s] for player p (0 X, 1 O): 1 won, 0 lost, 0.5 otherwise."""
    g = game()
    v = torch.full((2, NUM_STATES), 0.5, dtype=torch.float64)
    for s, o in g.outcome.items():
        if o in (1, 2):
            v[o - 1, s], v[2 - o, s] = 1.0, 0.0
    return v


# A chooser picks player p's next position among ``kids`` (next positions); it returns the
# choice and whether it was greedy (only greedy moves lead to an update).
Chooser = Callable[[int, int, list[int]], tuple[int, bool]]


def greedy_choice(values: np.ndarray, p: int, kids: list[int], rng: np.random.Generator) -> int:
    v = values[p, kids]
    best = np.flatnonzero(v == v.max())
    return kids[int(best[0] if len(best) == 1 else rng.choice(best))]


def td_update(values: np.ndarray, p: int, before: int, after: int, alpha: float,
              gamma: float) -> None:
    """V_p(before) <- V_p(before) + alpha [gamma V_p(after) - V_p(before)]."""
    values[p, before] += alpha * (gamma * values[p, after] - values[p, before])


def play_episode(values: np.ndarray, choose: Chooser, *, alpha: float, gamma: float,
                 learn: bool = True) -> int:
    """One game from the empty board; both players choose with ``choose`` and (when
    ``learn``) update their tables in ``values`` (2, 3^9) in place. Returns the
    outcome (1 X won, 2 O won, 3 draw)."""
    g = game()
    s, p = 0, 0
    last: list[int | None] = [None, None]
    while True:
        nxt, greedy = choose(p, s, [c for _m, c in g.children[s]])
        if learn and greedy and last[p] is not None:
            td_update(values, p, last[p], nxt, alpha, gamma)
        last[p], s = nxt, nxt
        if g.outcome[s]:
            q = 1 - p  # the player who did not make the last move learns the result
            if learn and last[q] is not None:
                td_update(values, q, last[q], s, alpha, gamma)
            return g.outcome[s]
        p = 1 - p


def random_player(rng: np.random.Generator) -> Callable[[int, list[int]], int]:
    return lambda s, kids: kids[int(rng.integers(len(kids)))]


def perfect_player(rng: np.random.Generator) -> Callable[[int, list[int]], int]:
    """Minimax: a uniformly random one of the optimal moves (it never loses)."""
    g = game()

    def move(s: int, kids: list[int]) -> int:
        best = g.perfect_moves(s)
        return best[int(rng.integers(len(best)))]

    return move


def play_against(values: np.ndarray, side: int, opponent: Callable[[int, list[int]], int],
                 rng: np.random.Generator) -> int:
    """A game of the greedy table player (``side`` 0: X, 1: O) against ``opponent``:
    1 the table player won, 0 draw, -1 it lost."""
    g = game()
    s, p = 0, 0
    while not g.outcome[s]:
        kids = [c for _m, c in g.children[s]]
        s = greedy_choice(values, p, kids, rng) if p == side else opponent(s, kids)
        p = 1 - p
    o = g.outcome[s]
    return 0 if o == 3 else (1 if o - 1 == side else -1)


OPPONENTS = {0: random_player, 1: perfect_player}


class TicTacToeValue(ZooModel):
    """The state-value table player of Sutton & Barto section 1.5, learned by self-play
    (see the module docstring). ``values`` (2, 3^9) holds X's and O's tables.

    A training step plays the batch's games (one self-play game per item) with
    exploration ``epsilon`` and step size ``alpha`` (multiplied by ``alpha_decay`` after
    each game, a step size that shrinks so the values settle), discount ``gamma``.
    ``predict`` plays the batch's evaluation games greedily and returns their results.
    """

    task = "game"
    step_strategy = "manual"

    def __init__(self, *, epsilon: float = 0.1, alpha: float = 0.2, gamma: float = 1.0,
                 alpha_decay: float = 1.0, min_alpha: float = 0.0) -> None:
        super().__init__()
        for name, v in (("epsilon", epsilon), ("gamma", gamma), ("alpha_decay", alpha_decay)):
            if not 0.0 <= float(v) <= 1.0:
                raise UserError(f"model.{name}={v} must be in [0, 1]")
        if not 0.0 < float(alpha) <= 1.0:
            raise UserError(f"model.alpha={alpha} must be in (0, 1]")
        self.epsilon, self.gamma = float(epsilon), float(gamma)
        self.alpha0, self.alpha_decay, self.min_alpha = float(alpha), float(alpha_decay), float(min_alpha)
        self.register_buffer("values", initial_values())
        self.register_buffer("games_played", torch.zeros((), dtype=torch.int64))

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {}

    def alpha(self) -> float:
        return max(self.alpha0 * self.alpha_decay ** int(self.games_played), self.min_alpha)

    def _table(self) -> np.ndarray:
        return self.values.detach().cpu().numpy()  # a view on the CPU: updated in place

    def self_play(self, n: int, rng: np.random.Generator) -> list[int]:
        values = self._table()
        eps = self.epsilon

        def choose(p: int, s: int, kids: list[int]) -> tuple[int, bool]:
            if eps > 0 and rng.random() < eps:
                return kids[int(rng.integers(len(kids)))], False
            return greedy_choice(values, p, kids, rng), True

        outcomes = []
        for _ in range(n):
            outcomes.append(play_episode(values, choose, alpha=self.alpha(), gamma=self.gamma))
            self.games_played += 1
        if self.values.device.type != "cpu":
            self.values.copy_(torch.from_numpy(values))
        return outcomes

    @torch.no_grad()
    def training_step(self, batch: Any, handle: Any) -> None:
        n = len(RoundBatch.of(batch).index)
        # one seed per step from the global generator (saved in checkpoints: resume is exact)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        outcomes = self.self_play(n, rng)
        handle.log("x_win", sum(o == 1 for o in outcomes) / n)
        handle.log("draw", sum(o == 3 for o in outcomes) / n)
        handle.log("alpha", self.alpha())

    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        """``opponent`` (B,) (0 random, 1 perfect) and ``result`` (B,) of each game:
        1 win, 0 draw, -1 loss of the table player."""
        b = RoundBatch.of(batch)
        values = self._table()
        results = []
        for opp, side, seed in b.extra.tolist():
            rng = np.random.default_rng(int(seed))
            results.append(play_against(values, int(side), OPPONENTS[int(opp)](rng), rng))
        return {"opponent": b.extra[:, 0].clone(), "result": torch.tensor(results, dtype=torch.int64)}
