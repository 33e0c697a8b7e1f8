"""Tic-tac-toe: the minimax player is never beaten (every game against it, brute force),
the value update is the notes' rule on a hand-computed game, and a table trained through
train.py meets its targets against the random and the perfect player."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.models.rl.tictactoe import (
    decode,
    encode,
    game,
    initial_values,
    play_against,
    play_episode,
    random_player,
)


def _games_against_perfect(perfect_side: int) -> tuple[int, int, int]:
    """Every game in which the perfect player (any of its optimal moves) meets every
    possible opponent: (perfect wins, draws, perfect losses)."""
    g = game()
    counts = [0, 0, 0]

    def walk(s: int) -> None:
        o = g.outcome[s]
        if o:
            counts[0 if o - 1 == perfect_side else (1 if o == 3 else 2)] += 1
            return
        kids = g.perfect_moves(s) if g.to_move(s) == perfect_side else [c for _m, c in g.children[s]]
        for c in kids:
            walk(c)

    walk(0)
    return tuple(counts)


@pytest.mark.parametrize("side", [0, 1])
def test_the_minimax_player_is_never_beaten(side):
    wins, draws, losses = _games_against_perfect(side)
    assert losses == 0
    assert wins > 0 and draws > 0


def test_positions_and_minimax_values():
    g = game()
    assert len(g.children) == 5478            # positions reachable from the empty board
    assert g.value[0] == 0                    # perfect play draws
    # X in two corners with the centre free, O to move after a blunder: X threatens twice
    board = (1, 0, 1, 0, 2, 0, 0, 0, 0)       # X 0, 2; O 4; O to move must block cell 1
    s = encode(board)
    assert decode(s) == board and g.to_move(s) == 1
    assert [decode(c)[1] for c in g.perfect_moves(s)] == [2]
    v = initial_values()
    won_x = encode((1, 1, 1, 2, 2, 0, 0, 0, 0))
    assert v[0, won_x] == 1.0 and v[1, won_x] == 0.0 and v[0, 0] == 0.5 == v[1, 0]


def _scripted(cells: list[int], exploratory: set[int] = frozenset()):
    """A chooser that plays the given cells in order (move k exploratory if k in the set)."""
    k = [0]

    def choose(p, s, kids):
        board = list(decode(s))
        board[cells[k[0]]] = p + 1
        nxt = encode(tuple(board))
        assert nxt in kids
        k[0] += 1
        return nxt, (k[0] - 1) not in exploratory

    return choose


def _after(cells: list[int]) -> int:
    board = [0] * 9
    for i, c in enumerate(cells):
        board[c] = 1 + i % 2
    return encode(tuple(board))


GAME = [0, 3, 1, 4, 2]  # X 0, O 3, X 1, O 4, X 2: X wins on the top row


def test_value_update_matches_a_hand_computed_game():
    v = initial_values().numpy()
    assert play_episode(v, _scripted(GAME), alpha=0.5, gamma=1.0) == 1
    s1, s2, s3, s4 = (_after(GAME[:k]) for k in (1, 2, 3, 4))
    # X: V(s1) += .5 (V(s3) - V(s1)) = .5 (.5 - .5) = 0 -> .5; V(s3) += .5 (1 - .5) -> .75
    # O: V(s2) unchanged (.5 -> .5); O's last afterstate s4 toward the loss: .5 + .5 (0 - .5) = .25
    assert (v[0, s1], v[0, s3], v[1, s2], v[1, s4]) == (0.5, 0.75, 0.5, 0.25)
    assert play_episode(v, _scripted(GAME), alpha=0.5, gamma=1.0) == 1
    # second game: V(s1) = .5 + .5 (.75 - .5) = .625, V(s3) = .75 + .5 (1 - .75) = .875,
    # V_O(s2) = .5 + .5 (.25 - .5) = .375, V_O(s4) = .25 + .5 (0 - .25) = .125
    assert (v[0, s1], v[0, s3], v[1, s2], v[1, s4]) == (0.625, 0.875, 0.375, 0.125)


def test_discount_and_exploratory_moves():
    v = initial_values().numpy()
    play_episode(v, _scripted(GAME), alpha=0.5, gamma=0.9)
    s1, s3 = _after(GAME[:1]), _after(GAME[:3])
    # V(s1) += .5 (.9 * .5 - .5) = .475; V(s3) += .5 (.9 * 1 - .5) = .7
    assert v[0, s1] == pytest.approx(0.475) and v[0, s3] == pytest.approx(0.7)
    v = initial_values().numpy()
    play_episode(v, _scripted(GAME, exploratory={2}), alpha=0.5, gamma=0.9)  # X's 2nd move
    assert v[0, s1] == 0.5                    # no learning from an exploratory move
    assert v[0, s3] == pytest.approx(0.7)     # the greedy win after it still teaches


def test_an_untrained_table_loses_to_the_random_player_sometimes():
    v = initial_values().numpy()
    results = [play_against(v, i % 2, random_player(np.random.default_rng(i)),
                            np.random.default_rng(i)) for i in range(200)]
    assert results.count(-1) > 10  # what training must fix


@pytest.mark.slow
def test_trained_table_meets_the_targets(train, tmp_path):
    run = tmp_path / "ttt"
    assert train("model=tictactoe_value", "logger=none", "trainer.progress=false",
                 f"hydra.run.dir={run}") == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["random_no_loss"] >= 0.99
    assert m["perfect_draw"] >= 0.90
