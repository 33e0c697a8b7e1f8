"""Search algorithms against brute force, hand-traced counts and the notes' theorems."""

import math
import random

import pytest

from zoo.search.informed import AStar, GreedyBestFirst
from zoo.search.nqueens import NQueens
from zoo.search.problems import GraphProblem, GridPath, Romania, SlidingPuzzle
from zoo.search.uninformed import (
    Bidirectional,
    BreadthFirst,
    DepthFirst,
    DepthLimited,
    IterativeDeepening,
    UniformCost,
    path_cost,
)

RNG = random.Random(0)


def solve(algo, problem):
    return algo.solve(problem, RNG)


# --------------------------------------------------------------------------- brute force
def brute_force(problem):
    """(cheapest cost, fewest steps) over every simple path from the start to a goal."""
    best_cost, best_steps = math.inf, math.inf

    def walk(s, seen, cost, steps):
        nonlocal best_cost, best_steps
        if problem.is_goal(s):
            best_cost, best_steps = min(best_cost, cost), min(best_steps, steps)
            return
        for a in problem.actions(s):
            t = problem.result(s, a)
            if t not in seen:
                seen.add(t)
                walk(t, seen, cost + problem.step_cost(s, a, t), steps + 1)
                seen.remove(t)

    s0 = problem.initial_state()
    walk(s0, {s0}, 0.0, 0)
    return best_cost, best_steps


def valid_path(problem, path, cost):
    assert path[0] == problem.initial_state() and problem.is_goal(path[-1])
    assert path_cost(problem, path) == pytest.approx(cost)


def small_problems():
    out = [("romania", Romania()), ("romania-from-Oradea", Romania(start="Oradea"))]
    for seed in range(4):
        out.append((f"unit-grid-{seed}", GridPath(rows=4, cols=5, obstacles=0.2, weighted=0.0, seed=seed)))
        out.append((f"weighted-grid-{seed}", GridPath(rows=4, cols=5, obstacles=0.15, weighted=0.4,
                                                       seed=seed)))
        rng = random.Random(seed)
        nodes = [f"n{i}" for i in range(7)]
        edges = [[a, b, rng.randint(1, 9)] for i, a in enumerate(nodes) for b in nodes[i + 1:]
                 if rng.random() < 0.45]
        edges.append(["n0", "n1", 5])
        edges.append(["n1", "n6", 5])  # connected start and goal
        out.append((f"graph-{seed}", GraphProblem(edges=edges, start="n0", goal="n6")))
    return out


SMALL = small_problems()


@pytest.mark.parametrize("name, problem", SMALL, ids=[n for n, _ in SMALL])
def test_optimal_against_brute_force(name, problem):
    cost, steps = brute_force(problem)
    assert problem.optimal_cost() == pytest.approx(cost)
    cheapest = [UniformCost(), UniformCost(graph=False)]
    if problem.heuristics:
        cheapest += [AStar(), AStar(graph=False), AStar(reopen=False)]
    for algo in cheapest:
        r = solve(algo, problem)
        assert r.solved and r.cost == pytest.approx(cost), (name, type(algo).__name__, r.cost, cost)
        valid_path(problem, r.path, r.cost)
    # Breadth-first, iterative deepening and bidirectional BFS are optimal in steps (the
    # cost when every step costs the same).
    unit = name.startswith("unit-grid")
    for algo in (BreadthFirst(), BreadthFirst(graph=False), IterativeDeepening(),
                 IterativeDeepening(graph=False), Bidirectional()):
        r = solve(algo, problem)
        assert r.solved and len(r.path) - 1 == steps, (name, type(algo).__name__)
        valid_path(problem, r.path, r.cost)
        if unit:
            assert r.cost == cost
    for algo in (DepthFirst(), GreedyBestFirst() if problem.heuristics else DepthFirst(graph=True)):
        r = solve(algo, problem)
        assert r.solved and r.cost >= cost - 1e-9
        valid_path(problem, r.path, r.cost)


def test_romania_textbook_routes():
    r = solve(AStar(heuristic="sld"), Romania())
    assert r.path == ["Arad", "Sibiu", "Rimnicu Vilcea", "Pitesti", "Bucharest"] and r.cost == 418
    g = solve(GreedyBestFirst(), Romania())  # AIMA fig. 3.23: greedy goes over Fagaras
    assert g.path == ["Arad", "Sibiu", "Fagaras", "Bucharest"] and g.cost == 450
    assert g.expanded == 3


# --------------------------------------------------------------------------- hand-traced counts
# S -> A 1, S -> B 4, S -> D 2, A -> B 2, A -> C 6, B -> C 1, B -> G 7, C -> G 2, D -> E 1
# (directed); the cheapest route S A B C G costs 6, the fewest steps S B G costs 11.
TINY = {"edges": [["S", "A", 1], ["S", "B", 4], ["S", "D", 2], ["A", "B", 2], ["A", "C", 6],
                  ["B", "C", 1], ["B", "G", 7], ["C", "G", 2], ["D", "E", 1]],
        "start": "S", "goal": "G", "directed": True,
        "heuristics": {"h": {"S": 5, "A": 4, "B": 2, "C": 1, "G": 0, "D": 10, "E": 10}}}

# (algorithm, path, expanded, generated, max frontier), traced by hand (see each comment).
TRACED = [
    # pop S: A B D | pop A: B (seen) C | pop B: C (seen) G -> goal at generation
    (BreadthFirst(), "SBG", 3, 8, 3),
    # tree search keeps the second B: [B D B C] is 4 long
    (BreadthFirst(graph=False), "SBG", 3, 8, 4),
    # stack [D B A] | A: [D B C B] | B: [D B C G C] | C: [D B C G G] | pop G
    (DepthFirst(), "SABCG", 4, 9, 5),
    # S: [D B A] | A: B already at depth 1, C | C at the limit (cut off) | B: C already at 2, G | pop G
    (DepthLimited(limit=2), "SBG", 3, 8, 3),
    # limit 0: S (1 generated) | limit 1: S expanded (4) | limit 2: as depth-limited (8)
    (IterativeDeepening(), "SBG", 4, 13, 3),
    # S | A (g 1): B 3 replaces B 4, C 7 | D (2): E 3 | B (3): C 4, G 10 | E (3) | C (4): G 6 | G
    (UniformCost(), "SABCG", 6, 10, 3),
    # f: S 5 | A 5: B 5, C 8 | B 5: C 5, G 10 | C 5: G 6 | G 6 (D, f 12, never expanded)
    (AStar(heuristic="h"), "SABCG", 4, 9, 3),
    # h: S | B 2: C 1, G 0 | pop G
    (GreedyBestFirst(heuristic="h"), "SBG", 2, 6, 4),
    # forward S: A B D | backward G: B is reached forward -> meet
    (Bidirectional(), "SBG", 2, 6, 4),
]


@pytest.mark.parametrize("algo, path, expanded, generated, frontier", TRACED,
                         ids=[f"{type(t[0]).__name__}-{'graph' if t[0].graph else 'tree'}" for t in TRACED])
def test_hand_traced_counts(algo, path, expanded, generated, frontier):
    problem = GraphProblem(**TINY)
    r = solve(algo, problem)
    assert "".join(r.path) == path
    assert (r.expanded, r.generated, r.max_frontier) == (expanded, generated, frontier)
    assert r.cost == path_cost(problem, r.path)


# --------------------------------------------------------------------------- IDS = BFS
@pytest.mark.parametrize("seed", range(6))
def test_ids_equals_bfs_on_unit_costs(seed):
    for problem in (SlidingPuzzle(seed=seed, scramble=14),
                    GridPath(rows=7, cols=9, obstacles=0.25, weighted=0.0, seed=seed)):
        bfs, ids = solve(BreadthFirst(), problem), solve(IterativeDeepening(), problem)
        assert bfs.solved and ids.solved
        assert ids.cost == bfs.cost == len(bfs.path) - 1
        assert ids.extra["iterations"] == len(bfs.path)  # limits 0..d
        valid_path(problem, ids.path, ids.cost)


# --------------------------------------------------------------------------- reopening
# Theorem 1: an admissible h keeps A* optimal only if closed nodes may be reopened.
# S -> A 1, S -> B 1, A -> C 2, B -> C 1, C -> G 3: the cheapest route S B C G costs 5.
# h(B) = 4 is admissible (B's true cost is 4) but inconsistent: h(B) > cost(B, C) + h(C) = 1.
# A* closes C through A (g 3) before B (f 5) finds the cheaper g 2.
INCONSISTENT = {"edges": [["S", "A", 1], ["S", "B", 1], ["A", "C", 2], ["B", "C", 1], ["C", "G", 3]],
                "start": "S", "goal": "G", "directed": True,
                "heuristics": {"h": {"S": 0, "A": 0, "B": 4, "C": 0, "G": 0}}}


def consistent(problem, name, states):
    """h(s) <= cost(s, t) + h(t) on every step out of ``states``, and h = 0 at goals."""
    for s in states:
        h = problem.heuristic(s, name)
        if problem.is_goal(s) and h != 0:
            return False
        for a in problem.actions(s):
            t = problem.result(s, a)
            if h > problem.step_cost(s, a, t) + problem.heuristic(t, name) + 1e-9:
                return False
    return True


def admissible(problem, name, states):
    from zoo.search.problems import dijkstra_cost

    for s in states:
        sub = GraphProblem(edges=[[u, v, c] for u, nb in problem.adj.items() for v, c in nb.items()],
                           start=s, goal=problem.goal, directed=True)
        true = dijkstra_cost(sub)
        if problem.heuristic(s, name) > (math.inf if true is None else true):
            return False
    return True


def test_inconsistent_heuristic_needs_reopening():
    problem = GraphProblem(**INCONSISTENT)
    states = list(problem.adj)
    assert admissible(problem, "h", states) and not consistent(problem, "h", states)
    without = solve(AStar(heuristic="h", reopen=False), problem)
    assert without.cost == 6 and "".join(without.path) == "SACG"  # not optimal
    assert without.extra["reopened"] == 0
    reopening = solve(AStar(heuristic="h", reopen=True), problem)
    assert reopening.cost == 5 and "".join(reopening.path) == "SBCG"
    assert reopening.extra["reopened"] == 1
    assert solve(AStar(heuristic="h", graph=False), problem).cost == 5  # tree search re-expands anyway


def _puzzle_states(n, count, seed=0):
    p = SlidingPuzzle(size=n)
    return [SlidingPuzzle(size=n, seed=seed * 1000 + i).initial_state() for i in range(count)] + [p.goal]


CONSISTENT = [
    ("romania-sld", Romania(), "sld", None),
    ("grid-manhattan", GridPath(rows=12, cols=16, seed=3), "manhattan", None),
    ("8puzzle-manhattan", SlidingPuzzle(seed=1, scramble=30), "manhattan", _puzzle_states(3, 300)),
    ("8puzzle-misplaced", SlidingPuzzle(seed=2, scramble=20), "misplaced", _puzzle_states(3, 300)),
    ("8puzzle-gaschnig", SlidingPuzzle(seed=3, scramble=20), "gaschnig", _puzzle_states(3, 300)),
    ("15puzzle-manhattan", SlidingPuzzle(size=4, scramble=30, seed=4), "manhattan", _puzzle_states(4, 100)),
]


@pytest.mark.parametrize("name, problem, h, states", CONSISTENT, ids=[c[0] for c in CONSISTENT])
def test_consistent_heuristic_never_reopens(name, problem, h, states):
    # Theorem 2: consistent -> graph-search A* is optimal and never reopens a closed state.
    states = states or (list(problem.adj) if hasattr(problem, "adj") else list(problem.cost))
    assert consistent(problem, h, states)
    r = solve(AStar(heuristic=h, reopen=True), problem)
    assert r.solved and r.extra["reopened"] == 0
    opt = problem.optimal_cost()
    if opt is not None:
        assert r.cost == opt
    assert solve(AStar(heuristic=h, reopen=False), problem).cost == r.cost


# --------------------------------------------------------------------------- 8-puzzle
@pytest.fixture(scope="module")
def uniform_puzzles():
    """Two uniformly drawn solvable 8-puzzles with BFS's run on each (the slow part)."""
    out = []
    for seed in (0, 1):
        p = SlidingPuzzle(seed=seed)
        out.append((p, solve(BreadthFirst(), p)))
    return out


def test_astar_manhattan_expands_10x_fewer_than_bfs(uniform_puzzles):
    for p, bfs in uniform_puzzles:
        astar = solve(AStar(heuristic="manhattan"), p)
        assert astar.cost == bfs.cost
        assert bfs.expanded >= 10 * astar.expanded, (bfs.expanded, astar.expanded)


def test_bidirectional_is_optimal_on_8puzzles(uniform_puzzles):
    for p, bfs in uniform_puzzles:
        r = solve(Bidirectional(), p)
        assert r.cost == bfs.cost
        valid_path(p, r.path, r.cost)
        assert r.expanded * 10 < bfs.expanded  # two half-depth searches


@pytest.mark.parametrize("seed", range(3))
def test_manhattan_dominates_misplaced(seed):
    p = SlidingPuzzle(seed=seed, scramble=40)
    for s in _puzzle_states(3, 200, seed):
        assert p.heuristic(s, "manhattan") >= p.heuristic(s, "misplaced")
        assert p.heuristic(s, "gaschnig") >= p.heuristic(s, "misplaced")
    man, mis = solve(AStar(heuristic="manhattan"), p), solve(AStar(heuristic="misplaced"), p)
    assert man.cost == mis.cost
    assert man.expanded < mis.expanded, (man.expanded, mis.expanded)


def test_puzzle_heuristics_are_admissible():
    for seed in range(8):
        p = SlidingPuzzle(seed=seed, scramble=16)
        true = p.optimal_cost()
        for h in p.heuristics:
            assert p.heuristic(p.start, h) <= true


def test_solvable_parity_matches_reachability():
    # 2x2: 12 of the 24 boards reach the goal; the parity rule must pick exactly those.
    p = SlidingPuzzle(size=2, start=[1, 2, 3, 0])
    reach, todo = {p.goal}, [p.goal]
    while todo:
        for t in p.predecessors(todo.pop()):
            if t not in reach:
                reach.add(t)
                todo.append(t)
    import itertools

    boards = list(itertools.permutations(range(4)))
    assert {b for b in boards if p.solvable(b)} == reach and len(reach) == 12
    for seed in range(20):  # random starts are solvable
        q = SlidingPuzzle(seed=seed)
        assert q.solvable(q.start)


def test_unsolvable_start_is_refused():
    from zoo.errors import UserError

    with pytest.raises(UserError, match="cannot reach the goal"):
        SlidingPuzzle(start=[1, 2, 3, 4, 5, 6, 8, 7, 0])
    with pytest.raises(UserError, match="each of 0..8 once"):
        SlidingPuzzle(start=[1, 1, 3, 4, 5, 6, 8, 7, 0])


# --------------------------------------------------------------------------- limits
def test_tree_dfs_gives_up_instead_of_looping():
    r = solve(DepthFirst(graph=False, max_expansions=500), Romania(goal="Neamt"))
    assert not r.solved and r.extra["gave_up"] == "gave up after 500 expansions (algo.max_expansions=500)"
    assert r.expanded == 500
    graph = solve(DepthFirst(), Romania(goal="Neamt"))
    assert graph.solved


def test_time_limit_gives_up():
    r = solve(IterativeDeepening(max_seconds=0.05, max_expansions=None), SlidingPuzzle(size=4, seed=0))
    assert not r.solved and "algo.max_seconds=0.05" in r.extra["gave_up"]
    assert r.seconds < 5


def test_depth_limit_cut_off_is_not_unsolvable():
    r = solve(DepthLimited(limit=2), Romania())
    assert not r.solved and "depth 2" in r.extra["gave_up"]
    assert solve(DepthLimited(limit=3), Romania()).solved
    # a finished search with no goal says no more than that
    island = GraphProblem(edges=[["a", "b", 1], ["c", "d", 1]], start="a", goal="d")
    for algo in (BreadthFirst(), DepthFirst(), IterativeDeepening(), UniformCost(), Bidirectional(),
                 DepthLimited(limit=5)):
        r = solve(algo, island)
        assert not r.solved and "gave_up" not in r.extra, type(algo).__name__


# --------------------------------------------------------------------------- N-queens
@pytest.mark.parametrize("n", [1, 4, 5, 8, 10])
def test_nqueens_solutions_are_valid(n):
    q = NQueens(n=n)
    for algo in (DepthFirst(), BreadthFirst()) if n <= 8 else (DepthFirst(),):
        r = solve(algo, q)
        rows = r.path[-1]
        assert sorted(rows) == list(range(n))
        assert all(abs(rows[i] - rows[j]) != j - i for i in range(n) for j in range(i + 1, n))
        assert r.cost == n == q.optimal_cost()


def test_nqueens_without_solution():
    for n in (2, 3):
        r = solve(DepthFirst(), NQueens(n=n))
        assert not r.solved and NQueens(n=n).optimal_cost() is None


def test_eight_queens_state_space_size():
    # The column-by-column formulation has 2,057 states for n = 8 (AIMA 3.2.1): BFS
    # without the early goal test would expand them all; DFS graph search sees them all
    # when the goal test never succeeds.
    q = NQueens(n=8)
    q.is_goal = lambda s: False
    assert solve(DepthFirst(), q).expanded == 2057
