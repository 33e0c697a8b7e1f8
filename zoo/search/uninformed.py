"""Uninformed search: breadth-first, depth-first, depth-limited, iterative deepening,
uniform-cost and bidirectional breadth-first search.

Every algorithm runs as tree search (only an open list: a state may be expanded many
times, and cycles are followed until a limit stops them) or as graph search (an open
and a closed list: a state is expanded once, or again only when a cheaper path to it
appears), chosen by ``graph``. What they count is the same everywhere:

- ``generated``: nodes created: the start node plus every successor computed;
- ``expanded``: nodes whose successors were computed (a node taken off the open list
  and found to be a goal, or at the depth limit, is not expanded);
- ``max_frontier``: the largest number of nodes on the open list at once (for
  bidirectional search both open lists together).

``max_expansions`` and ``max_seconds`` bound a run: past either the result says
``gave up after N expansions`` (``extra['gave_up']``) instead of running on.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from zoo.errors import UserError
from zoo.search.base import Algorithm, Problem, SearchResult, State

TRACE_CAP = 20_000  # states kept for pictures of the expansion order


class Node:
    """A search-tree node: a state, the node it was reached from and the path cost g."""

    __slots__ = ("depth", "g", "parent", "state")

    def __init__(self, state: State, parent: Node | None = None, g: float = 0.0, depth: int = 0):
        self.state, self.parent, self.g, self.depth = state, parent, g, depth

    def path(self) -> list[State]:
        out, node = [], self
        while node is not None:
            out.append(node.state)
            node = node.parent
        return out[::-1]


class GaveUp(Exception):
    """A run reached ``max_expansions`` or ``max_seconds``."""


class Counts:
    """The counters of one run and its limits."""

    def __init__(self, max_expansions: int | None, max_seconds: float | None) -> None:
        self.max_expansions, self.max_seconds = max_expansions, max_seconds
        self.expanded = self.generated = self.max_frontier = 0
        self.trace: list[State] = []
        self.start = time.perf_counter()

    def expand(self, state: State) -> None:
        """Count one expansion of ``state``, or raise GaveUp past a limit."""
        if self.max_expansions is not None and self.expanded >= self.max_expansions:
            raise GaveUp(f"gave up after {self.expanded} expansions (algo.max_expansions="
                         f"{self.max_expansions})")
        if self.max_seconds is not None and self.expanded % 256 == 0 \
                and time.perf_counter() - self.start > self.max_seconds:
            raise GaveUp(f"gave up after {self.expanded} expansions in "
                         f"{time.perf_counter() - self.start:.1f} s (algo.max_seconds={self.max_seconds})")
        self.expanded += 1
        if len(self.trace) < TRACE_CAP:
            self.trace.append(state)

    def frontier(self, size: int) -> None:
        self.max_frontier = max(self.max_frontier, size)

    def result(self, path: list[State] | None, cost: float | None, **extra: Any) -> SearchResult:
        return SearchResult(path=path, cost=cost, expanded=self.expanded, generated=self.generated,
                            max_frontier=self.max_frontier,
                            seconds=time.perf_counter() - self.start, solved=path is not None,
                            extra=extra, trace=self.trace)


def children(problem: Problem, node: Node, counts: Counts) -> Iterator[Node]:
    """The successors of ``node`` in the problem's action order, each counted as generated."""
    s = node.state
    for a in problem.actions(s):
        t = problem.result(s, a)
        counts.generated += 1
        yield Node(t, node, node.g + problem.step_cost(s, a, t), node.depth + 1)


def path_cost(problem: Problem, path: list[State]) -> float:
    """The cost of a path given as states (the cheapest action between each pair)."""
    total = 0.0
    for s, t in itertools.pairwise(path):
        costs = [problem.step_cost(s, a, t) for a in problem.actions(s) if problem.result(s, a) == t]
        if not costs:
            raise ValueError(f"no action leads from {s!r} to {t!r}")
        total += min(costs)
    return total


class Search(Algorithm):
    """The options every search algorithm takes: ``graph`` (closed list) and the limits."""

    uses_heuristic = False

    def __init__(self, *, graph: bool = True, max_expansions: int | None = 1_000_000,
                 max_seconds: float | None = 60.0, heuristic: str | None = None) -> None:
        for name, v in (("max_expansions", max_expansions), ("max_seconds", max_seconds)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
                raise UserError(f"algo.{name}={v!r}: expected a positive number or null")
        if not isinstance(graph, bool):
            raise UserError(f"algo.graph={graph!r}: expected true (graph search) or false (tree search)")
        self.graph, self.max_expansions, self.max_seconds = graph, max_expansions, max_seconds
        self.heuristic = heuristic

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        counts = Counts(self.max_expansions, self.max_seconds)
        self.prepare(problem)
        try:
            return self.search(problem, counts, rng)
        except GaveUp as e:
            return counts.result(None, None, gave_up=str(e))

    def prepare(self, problem: Problem) -> None:
        """Refuse a problem this algorithm cannot run on (UserError), before searching."""

    def search(self, problem: Problem, counts: Counts, rng: random.Random) -> SearchResult:
        raise NotImplementedError


class BreadthFirst(Search):
    """Breadth-first search: a FIFO open list, the goal test when a node is generated
    (optimal when every step costs the same)."""

    def search(self, problem: Problem, counts: Counts, rng: random.Random) -> SearchResult:
        root = Node(problem.initial_state())
        counts.generated = 1
        if problem.is_goal(root.state):
            return counts.result([root.state], 0.0)
        frontier, reached = deque([root]), {root.state}  # reached: open and closed states
        counts.frontier(1)
        while frontier:
            node = frontier.popleft()
            counts.expand(node.state)
            for child in children(problem, node, counts):
                if self.graph:
                    if child.state in reached:
                        continue
                    reached.add(child.state)
                if problem.is_goal(child.state):
                    return counts.result(child.path(), child.g)
                frontier.append(child)
            counts.frontier(len(frontier))
        return counts.result(None, None)


class DepthFirst(Search):
    """Depth-first search: a LIFO open list, the goal test when a node is taken off it.
    Graph search keeps a closed list of expanded states; tree search follows cycles
    until ``max_expansions``."""

    def search(self, problem: Problem, counts: Counts, rng: random.Random) -> SearchResult:
        stack, closed = [Node(problem.initial_state())], set()
        counts.generated = 1
        counts.frontier(1)
        while stack:
            node = stack.pop()
            if self.graph:
                if node.state in closed:
                    continue
                closed.add(node.state)
            if problem.is_goal(node.state):
                return counts.result(node.path(), node.g)
            counts.expand(node.state)
            kids = [c for c in children(problem, node, counts)
                    if not (self.graph and c.state in closed)]
            stack.extend(reversed(kids))  # the first action is tried first
            counts.frontier(len(stack))
        return counts.result(None, None)


def _depth_limited(problem: Problem, limit: int, graph: bool, counts: Counts) -> tuple[Node | None, bool]:
    """Depth-first search to depth ``limit``. Returns (goal node or None, cut off): cut
    off says whether some node at the limit had successors left unexplored. Graph search
    remembers the shallowest depth each state was reached at and drops a node reaching
    it no shallower: every state is still reached at its least depth, so the first goal
    found by iterative deepening is a shallowest one."""
    root = Node(problem.initial_state())
    counts.generated += 1
    stack, shallowest = [root], {root.state: 0}
    counts.frontier(1)
    cutoff = False
    while stack:
        node = stack.pop()
        if problem.is_goal(node.state):
            return node, cutoff
        if node.depth >= limit:
            cutoff = cutoff or any(True for _ in problem.actions(node.state))
            continue
        counts.expand(node.state)
        kids = []
        for c in children(problem, node, counts):
            if graph:
                if shallowest.get(c.state, math.inf) <= c.depth:
                    continue
                shallowest[c.state] = c.depth
            kids.append(c)
        stack.extend(reversed(kids))
        counts.frontier(len(stack))
    return None, cutoff


class DepthLimited(Search):
    """Depth-first search that expands no node at depth ``limit`` (complete only when a
    goal lies within it; not optimal)."""

    def __init__(self, *, limit: int = 20, **kw: Any) -> None:
        super().__init__(**kw)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise UserError(f"algo.limit={limit!r}: expected a depth >= 0")
        self.limit = limit

    def search(self, problem: Problem, counts: Counts, rng: random.Random) -> SearchResult:
        node, cutoff = _depth_limited(problem, self.limit, self.graph, counts)
        if node is None:
            if cutoff:  # not proven unsolvable: a goal may lie deeper
                return counts.result(None, None, limit=self.limit,
                                     gave_up=f"no goal within depth {self.limit} (algo.limit)")
            return counts.result(None, None, limit=self.limit)
        return counts.result(node.path(), node.g, limit=self.limit)


class IterativeDeepening(Search):
    """Depth-limited search with limit 0, 1, 2, ... until a goal is found (complete, and
    optimal when every step costs the same); counts add up over the iterations."""

    def __init__(self, *, max_depth: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int)
                                      or max_depth < 0):
            raise UserError(f"algo.max_depth={max_depth!r}: expected a depth >= 0 or null")
        self.max_depth = max_depth

    def search(self, problem: Problem, counts: Counts, rng: random.Random) -> SearchResult:
        for limit in itertools.count():
            if self.max_depth is not None and limit > self.max_depth:
                return counts.result(None, None, gave_up=f"no goal within algo.max_depth={self.max_depth}")
            node, cutoff = _depth_limited(problem, limit, self.graph, counts)
            if node is not None:
                return counts.result(node.path(), node.g, iterations=limit + 1)
            if not cutoff:  # the whole space was searched: there is no goal
                return counts.result(None, None, iterations=limit + 1)
        raise AssertionError("unreachable")


def best_first(problem: Problem, counts: Counts, f: Callable[[float, float], float],
               h: Callable[[State], float], graph: bool, reopen: bool) -> SearchResult:
    """Best-first search on ``f(g, h)``; the goal test when a node is taken off the open
    list. Ties go to the smaller h (the node nearer the goal), then first in.

    Graph search keeps one open node per state (a cheaper path replaces it) and a closed
    list. A cheaper path to a closed state reopens it (``reopen``) or is dropped; the
    number of reopenings is ``extra['reopened']``."""
    root = Node(problem.initial_state())
    counts.generated = 1
    tie = itertools.count()
    h0 = h(root.state)
    heap = [(f(0.0, h0), h0, next(tie), root)]
    open_nodes: dict[State, Node] = {root.state: root}
    closed: set[State] = set()
    best_g: dict[State, float] = {root.state: 0.0}  # g of the state's open or closed node
    reopened = 0
    counts.frontier(1)
    while heap:
        _, _, _, node = heapq.heappop(heap)
        if graph:
            if open_nodes.get(node.state) is not node:
                continue  # replaced by a cheaper node for the same state
            del open_nodes[node.state]
        if problem.is_goal(node.state):
            return counts.result(node.path(), node.g, reopened=reopened)
        counts.expand(node.state)
        if graph:
            closed.add(node.state)
        for child in children(problem, node, counts):
            s = child.state
            if graph:
                if s in closed:
                    # Not a cheaper path: drop it (with a consistent h, or h = 0 and costs
                    # >= 0, no path to a closed state is ever cheaper).
                    if not reopen or child.g >= best_g[s]:
                        continue
                    closed.discard(s)
                    reopened += 1
                elif s in open_nodes and child.g >= open_nodes[s].g:
                    continue
                open_nodes[s] = child
                best_g[s] = child.g
            hc = h(s)
            heapq.heappush(heap, (f(child.g, hc), hc, next(tie), child))
        counts.frontier(len(open_nodes) if graph else len(heap))
    return counts.result(None, None, reopened=reopened)


class UniformCost(Search):
    """Uniform-cost search (Dijkstra): best-first on the path cost g; optimal for step
    costs >= 0. Graph search keeps the cheapest g known for each state, as the notes
    describe, and a closed list."""

    def search(self, problem: Problem, counts: Counts, rng: random.Random) -> SearchResult:
        return best_first(problem, counts, lambda g, h: g, lambda s: 0.0, self.graph, reopen=False)


class Bidirectional(Search):
    """Bidirectional breadth-first search: one search forward from the start, one
    backward from the goal state (through ``predecessors``), a whole layer at a time on
    the side with the smaller open list, until a generated state is reached by the other
    side. With every layer complete before the other side moves, the first meeting is on
    a shortest path (in steps), so it is optimal when every step costs the same."""

    def prepare(self, problem: Problem) -> None:
        if not self.graph:
            raise UserError("bidirectional search meets in the states both sides have reached: "
                            "it is graph search only (drop algo.graph=false)")
        if problem.goal_state() is None:
            raise UserError(f"bidirectional search needs one goal state to search back from; "
                            f"{type(problem).__name__} has a goal test only")

    def search(self, problem: Problem, counts: Counts, rng: random.Random) -> SearchResult:
        start, goal = problem.initial_state(), problem.goal_state()
        counts.generated = 1
        if problem.is_goal(start):
            return counts.result([start], 0.0)
        counts.generated = 2
        # parent[0]: state -> the state it was reached from (forward); parent[1]: state ->
        # the state after it on the way to the goal (backward).
        parent: tuple[dict, dict] = ({start: None}, {goal: None})
        layers = (deque([start]), deque([goal]))
        counts.frontier(2)
        while layers[0] and layers[1]:
            side = 0 if len(layers[0]) <= len(layers[1]) else 1
            mine, other = parent[side], parent[1 - side]
            nxt: deque = deque()
            for s in layers[side]:
                counts.expand(s)
                succ = problem.predecessors(s) if side else (problem.result(s, a) for a in problem.actions(s))
                for t in succ:
                    counts.generated += 1
                    if t in mine:
                        continue
                    mine[t] = s
                    if t in other:
                        path = self._join(parent, t)
                        return counts.result(path, path_cost(problem, path))
                    nxt.append(t)
            layers = (nxt, layers[1]) if side == 0 else (layers[0], nxt)
            counts.frontier(len(layers[0]) + len(layers[1]))
        return counts.result(None, None)

    @staticmethod
    def _join(parent: tuple[dict, dict], meet: State) -> list[State]:
        fwd, s = [], meet
        while s is not None:
            fwd.append(s)
            s = parent[0][s]
        path, s = fwd[::-1], parent[1][meet]
        while s is not None:
            path.append(s)
            s = parent[1][s]
        return path
