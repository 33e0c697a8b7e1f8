"""Problems for incremental search: an explicit weighted graph (the Romania map among
them), path-finding on a grid with obstacles and weighted cells, and the sliding-tile
puzzles (8-puzzle, 15-puzzle).

Each is modelled as the notes list it: initial state, actions, transition model, goal
test, step cost; and each names its heuristics (``heuristics``) and, where it is cheap
to know, its true optimum (``optimal_cost``) by a search of its own here, independent
of the algorithms under test.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from zoo.errors import UserError
from zoo.search.base import Problem, SearchResult, State


def dijkstra_cost(problem: Problem) -> float | None:
    """The cheapest cost from the start to a goal over the whole reachable space (None:
    no goal is reachable)."""
    start = problem.initial_state()
    best, heap, n = {start: 0.0}, [(0.0, 0, start)], 1
    while heap:
        g, _, s = heapq.heappop(heap)
        if g > best[s]:
            continue
        if problem.is_goal(s):
            return g
        for a in problem.actions(s):
            t = problem.result(s, a)
            gt = g + problem.step_cost(s, a, t)
            if gt < best.get(t, math.inf):
                best[t] = gt
                heapq.heappush(heap, (gt, n, t))
                n += 1
    return None


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Any) -> None:
    from zoo.viz import save_figure

    save_figure(fig, path)


def _title(result: SearchResult, what: str) -> str:
    head = result.extra.get("title", "")
    if result.solved:
        tail = f"cost {result.cost:g}, {len(result.path) - 1} steps"
    else:
        tail = result.extra.get("gave_up") or "no solution"
    return (f"{head} on {what}: " if head else f"{what}: ") + \
        f"{tail}, {result.expanded} expanded, {result.generated} generated"


# --------------------------------------------------------------------------- graphs
class GraphProblem(Problem):
    """Find a cheapest route in a weighted graph. ``edges`` are ``[a, b, cost]``
    (both ways unless ``directed``); the actions of a node are its neighbours in the
    order the edges list them; ``heuristics`` maps a name to a table node -> h."""

    def __init__(self, *, edges: Sequence[Sequence[Any]], start: str, goal: str,
                 heuristics: dict[str, dict[str, float]] | None = None, directed: bool = False,
                 coords: dict[str, Sequence[float]] | None = None) -> None:
        self.adj: dict[str, dict[str, float]] = {}
        self.back: dict[str, dict[str, float]] = {}
        for e in edges:
            if len(e) != 3 or not isinstance(e[2], (int, float)) or e[2] < 0:
                raise UserError(f"problem.edges: {list(e)!r} is not [from, to, cost >= 0]")
            a, b, c = str(e[0]), str(e[1]), float(e[2])
            for u, v in ((a, b), (b, a)) if not directed else ((a, b),):
                self.adj.setdefault(u, {})[v] = c
                self.adj.setdefault(v, {})
                self.back.setdefault(v, {})[u] = c
                self.back.setdefault(u, {})
        for name, node in (("start", start), ("goal", goal)):
            if node not in self.adj:
                raise UserError(f"problem.{name}={node!r} is not a node of the map; nodes: "
                                f"{', '.join(sorted(self.adj))}")
        self.start, self.goal = start, goal
        self.tables = {k: {str(n): float(v) for n, v in t.items()} for k, t in (heuristics or {}).items()}
        for k, t in self.tables.items():
            missing = sorted(set(self.adj) - set(t))
            if missing:
                raise UserError(f"heuristic '{k}' has no value for {', '.join(missing)}")
        self.heuristics = tuple(self.tables)
        self.coords = {k: tuple(v) for k, v in (coords or {}).items()}

    def initial_state(self) -> State:
        return self.start

    def actions(self, state: State) -> Iterable[str]:
        return self.adj[state]

    def result(self, state: State, action: str) -> State:
        return action

    def is_goal(self, state: State) -> bool:
        return state == self.goal

    def step_cost(self, state: State, action: str, next_state: State) -> float:
        return self.adj[state][next_state]

    def heuristic(self, state: State, name: str) -> float:
        return self.tables[name][state]

    def goal_state(self) -> State:
        return self.goal

    def predecessors(self, state: State) -> Iterable[State]:
        return self.back[state]

    def optimal_cost(self) -> float | None:
        return dijkstra_cost(self)

    def draw(self, result: SearchResult, path: Any) -> None:
        if not self.coords:
            return
        fig = _figure(9, 6.5)
        ax = fig.add_subplot()
        on_path = set(zip(result.path or [], (result.path or [])[1:]))
        for u, nbrs in self.adj.items():
            for v, c in nbrs.items():
                if u < v or v not in self.adj or u not in self.adj[v]:
                    (x0, y0), (x1, y1) = self.coords[u], self.coords[v]
                    hot = (u, v) in on_path or (v, u) in on_path
                    ax.plot([x0, x1], [y0, y1], color="crimson" if hot else "0.7",
                            lw=3 if hot else 1, zorder=1)
                    ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{c:g}", fontsize=7, color="0.35",
                            ha="center", va="center")
        order = {}
        for i, s in enumerate(result.trace or []):
            order.setdefault(s, i + 1)
        for n, (x, y) in self.coords.items():
            colour = "gold" if n in (self.start, self.goal) else ("skyblue" if n in order else "white")
            ax.scatter([x], [y], s=70, color=colour, edgecolor="k", zorder=2)
            label = n + (f" ({order[n]})" if n in order else "")
            ax.text(x, y + 9, label, fontsize=8, ha="center", zorder=3)
        from matplotlib.lines import Line2D

        ax.legend(handles=[
            Line2D([], [], color="crimson", lw=3, label="path found"),
            Line2D([], [], marker="o", ls="", markerfacecolor="skyblue", markeredgecolor="k",
                   label="expanded (n: order)"),
            Line2D([], [], marker="o", ls="", markerfacecolor="gold", markeredgecolor="k",
                   label="start / goal")], loc="lower left", fontsize=8)
        ax.set_title(_title(result, f"{self.start} -> {self.goal}"), fontsize=9)
        ax.set_axis_off()
        _save(fig, path)


# Road distances (km) and straight-line distances to Bucharest of Russell & Norvig's
# map of Romania (AIMA, figures 3.2 and 3.22); coordinates only place the picture.
ROMANIA_ROADS = [
    ("Arad", "Zerind", 75), ("Arad", "Sibiu", 140), ("Arad", "Timisoara", 118),
    ("Zerind", "Oradea", 71), ("Oradea", "Sibiu", 151), ("Timisoara", "Lugoj", 111),
    ("Lugoj", "Mehadia", 70), ("Mehadia", "Drobeta", 75), ("Drobeta", "Craiova", 120),
    ("Craiova", "Rimnicu Vilcea", 146), ("Craiova", "Pitesti", 138),
    ("Sibiu", "Fagaras", 99), ("Sibiu", "Rimnicu Vilcea", 80),
    ("Rimnicu Vilcea", "Pitesti", 97), ("Fagaras", "Bucharest", 211),
    ("Pitesti", "Bucharest", 101), ("Bucharest", "Giurgiu", 90), ("Bucharest", "Urziceni", 85),
    ("Urziceni", "Hirsova", 98), ("Hirsova", "Eforie", 86), ("Urziceni", "Vaslui", 142),
    ("Vaslui", "Iasi", 92), ("Iasi", "Neamt", 87),
]
ROMANIA_SLD = {
    "Arad": 366, "Bucharest": 0, "Craiova": 160, "Drobeta": 242, "Eforie": 161,
    "Fagaras": 176, "Giurgiu": 77, "Hirsova": 151, "Iasi": 226, "Lugoj": 244,
    "Mehadia": 241, "Neamt": 234, "Oradea": 380, "Pitesti": 100, "Rimnicu Vilcea": 193,
    "Sibiu": 253, "Timisoara": 329, "Urziceni": 80, "Vaslui": 199, "Zerind": 374,
}
ROMANIA_XY = {
    "Arad": (91, 492), "Bucharest": (400, 327), "Craiova": (253, 288), "Drobeta": (165, 299),
    "Eforie": (562, 293), "Fagaras": (305, 449), "Giurgiu": (375, 270), "Hirsova": (534, 350),
    "Iasi": (473, 506), "Lugoj": (165, 379), "Mehadia": (168, 339), "Neamt": (406, 537),
    "Oradea": (131, 571), "Pitesti": (320, 368), "Rimnicu Vilcea": (233, 410),
    "Sibiu": (207, 457), "Timisoara": (94, 410), "Urziceni": (456, 350), "Vaslui": (509, 444),
    "Zerind": (108, 531),
}


class Romania(GraphProblem):
    """Route-finding on the map of Romania; ``sld`` (straight-line distance) is the
    heuristic when the goal is Bucharest, the only city the table measures to."""

    def __init__(self, *, start: str = "Arad", goal: str = "Bucharest") -> None:
        super().__init__(edges=ROMANIA_ROADS, start=start, goal=goal,
                         heuristics={"sld": ROMANIA_SLD} if goal == "Bucharest" else None,
                         coords=ROMANIA_XY)


# --------------------------------------------------------------------------- grids
MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


class GridPath(Problem):
    """Path-finding on a 4-connected grid. ``layout`` rows use ``.`` free, ``#`` or ``X``
    wall (``X`` needs no quoting on a command line),
    ``2``-``9`` a cell that costs that much to enter, ``S`` start, ``G`` goal; without
    one a random grid (``rows`` x ``cols``, ``obstacles`` and ``weighted`` the shares of
    walls and costly cells, ``seed``) with a route from the top-left to the bottom-right
    corner. Entering a cell costs its weight (1 for a free one)."""

    def __init__(self, *, layout: Sequence[str] | None = None, rows: int = 12, cols: int = 16,
                 obstacles: float = 0.25, weighted: float = 0.2, weight: int = 5,
                 seed: int = 0) -> None:
        if layout:
            self._parse([str(r) for r in layout])
        else:
            for k, v in (("rows", rows), ("cols", cols)):
                if isinstance(v, bool) or not isinstance(v, int) or not 2 <= v <= 1000:
                    raise UserError(f"problem.{k}={v!r}: expected an integer from 2 to 1000")
            for k, v in (("obstacles", obstacles), ("weighted", weighted)):
                if not isinstance(v, (int, float)) or not 0 <= v < 1:
                    raise UserError(f"problem.{k}={v!r}: expected a share in [0, 1)")
            if not isinstance(weight, int) or not 1 <= weight <= 9:
                raise UserError(f"problem.weight={weight!r}: expected an integer from 1 to 9")
            self._random(rows, cols, obstacles, weighted, weight, seed)
        self.heuristics = ("manhattan",)

    def _parse(self, layout: list[str]) -> None:
        width = {len(r) for r in layout}
        if len(width) != 1:
            raise UserError("problem.layout: every row must have the same length")
        self.rows, self.cols = len(layout), width.pop()
        self.cost: dict[tuple[int, int], float] = {}
        start = goal = None
        for r, line in enumerate(layout):
            for c, ch in enumerate(line):
                if ch in "#X":
                    continue
                if ch not in ".SG23456789":
                    raise UserError(f"problem.layout: unknown cell '{ch}' (use . # X S G 2-9)")
                self.cost[(r, c)] = float(ch) if ch.isdigit() else 1.0
                start = (r, c) if ch == "S" else start
                goal = (r, c) if ch == "G" else goal
        if start is None or goal is None:
            raise UserError("problem.layout needs one S (start) and one G (goal)")
        self.start, self.goal = start, goal

    def _random(self, rows: int, cols: int, obstacles: float, weighted: float, weight: int,
                seed: int) -> None:
        self.rows, self.cols = rows, cols
        self.start, self.goal = (0, 0), (rows - 1, cols - 1)
        rng = random.Random(seed)
        for _ in range(1000):
            self.cost = {}
            for r in range(rows):
                for c in range(cols):
                    u = rng.random()
                    if (r, c) in (self.start, self.goal) or u >= obstacles:
                        self.cost[(r, c)] = float(weight) if rng.random() < weighted else 1.0
            if self.start in self._reachable(self.goal):
                return
        raise UserError(f"no {rows}x{cols} grid with obstacles={obstacles} has a route; "
                        "lower problem.obstacles")

    def _reachable(self, cell: tuple[int, int]) -> set:
        seen, todo = {cell}, deque([cell])
        while todo:
            for n in self.predecessors(todo.popleft()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen

    def initial_state(self) -> State:
        return self.start

    def actions(self, state: State) -> Iterable[str]:
        r, c = state
        return [m for m, (dr, dc) in MOVES.items() if (r + dr, c + dc) in self.cost]

    def result(self, state: State, action: str) -> State:
        dr, dc = MOVES[action]
        return (state[0] + dr, state[1] + dc)

    def is_goal(self, state: State) -> bool:
        return state == self.goal

    def step_cost(self, state: State, action: str, next_state: State) -> float:
        return self.cost[next_state]

    def heuristic(self, state: State, name: str) -> float:
        # Every cell costs at least 1 to enter: the Manhattan distance never overestimates.
        return float(abs(state[0] - self.goal[0]) + abs(state[1] - self.goal[1]))

    def goal_state(self) -> State:
        return self.goal

    def predecessors(self, state: State) -> Iterable[State]:
        r, c = state
        return [(r + dr, c + dc) for dr, dc in MOVES.values() if (r + dr, c + dc) in self.cost]

    def optimal_cost(self) -> float | None:
        return dijkstra_cost(self)

    def draw(self, result: SearchResult, path: Any) -> None:
        import numpy as np

        img = np.zeros((self.rows, self.cols, 3))
        for r in range(self.rows):
            for c in range(self.cols):
                w = self.cost.get((r, c))
                img[r, c] = (0.1, 0.1, 0.1) if w is None else ((1, 1, 1) if w == 1 else (0.75, 0.6, 0.4))
        fig = _figure(max(4, self.cols * 0.45) + 2, max(3, self.rows * 0.45))
        ax = fig.add_subplot()
        ax.imshow(img, interpolation="nearest")
        trace = result.trace or []
        if trace:
            first: dict = {}
            for i, s in enumerate(trace):
                first.setdefault(s, i)
            ys, xs = zip(*first)
            sc = ax.scatter(xs, ys, c=list(first.values()), cmap="viridis", s=40, marker="s", alpha=0.55)
            fig.colorbar(sc, ax=ax, fraction=0.03, pad=0.02, label="expansion order")
        if result.path:
            ys, xs = zip(*result.path)
            ax.plot(xs, ys, color="crimson", lw=2.5, label="path found")
        ax.scatter([self.start[1]], [self.start[0]], marker="o", s=120, color="limegreen",
                   edgecolor="k", label="start", zorder=3)
        ax.scatter([self.goal[1]], [self.goal[0]], marker="*", s=200, color="gold",
                   edgecolor="k", label="goal", zorder=3)
        from matplotlib.patches import Patch

        handles, _ = ax.get_legend_handles_labels()
        handles += [Patch(color=(0.1, 0.1, 0.1), label="wall"),
                    Patch(color=(0.75, 0.6, 0.4), label="costly cell")]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.15, 1), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(_title(result, f"a {self.rows}x{self.cols} grid"), fontsize=9)
        _save(fig, path)


# --------------------------------------------------------------------------- sliding tiles
class SlidingPuzzle(Problem):
    """The (n*n - 1)-puzzle: slide tiles into the blank (0) until the board reads
    ``goal`` (default 1, 2, ..., 0). A state is the board read row by row; an action
    moves the blank up, down, left or right.

    The start is ``start`` (a permutation of 0..n*n-1, refused when unsolvable), or a
    random solvable board from ``seed``: drawn uniformly, or reached from the goal by
    ``scramble`` random moves (for the 15-puzzle, whose uniform boards are too deep to
    solve here).

    Heuristics, each the exact cost of a relaxed puzzle (so admissible and consistent):
    ``manhattan`` (tiles move through each other), ``misplaced`` (tiles jump anywhere)
    and ``gaschnig`` (a tile jumps into the blank wherever it is)."""

    heuristics = ("manhattan", "misplaced", "gaschnig")

    def __init__(self, *, size: int = 3, start: Sequence[int] | None = None,
                 goal: Sequence[int] | None = None, seed: int = 0,
                 scramble: int | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or not 2 <= size <= 6:
            raise UserError(f"problem.size={size!r}: expected 2 to 6")
        self.n = size
        cells = size * size
        self.goal = self._board(goal, "goal") if goal is not None else (*range(1, cells), 0)
        self.goal_at = {t: divmod(i, size) for i, t in enumerate(self.goal)}
        if start is not None:
            self.start = self._board(start, "start")
            if not self.solvable(self.start):
                raise UserError(f"problem.start={list(self.start)} cannot reach the goal "
                                f"{list(self.goal)}: its permutation parity differs (swap two tiles)")
        else:
            rng = random.Random(seed)
            if scramble is not None:
                if isinstance(scramble, bool) or not isinstance(scramble, int) or scramble < 0:
                    raise UserError(f"problem.scramble={scramble!r}: expected a number of moves >= 0")
                self.start = self._scrambled(rng, scramble)
            else:
                board = list(self.goal)
                rng.shuffle(board)
                if not self.solvable(tuple(board)):
                    i, j = [k for k, t in enumerate(board) if t != 0][:2]
                    board[i], board[j] = board[j], board[i]  # one swap flips the parity
                self.start = tuple(board)

    def _board(self, tiles: Sequence[int], what: str) -> tuple[int, ...]:
        try:
            board = tuple(int(t) for t in tiles)
        except (TypeError, ValueError):
            raise UserError(f"problem.{what}={tiles!r}: expected a list of tile numbers") from None
        if sorted(board) != list(range(self.n * self.n)):
            raise UserError(f"problem.{what}={list(board)}: expected each of 0..{self.n * self.n - 1} "
                            f"once (0 is the blank, read row by row)")
        return board

    def _scrambled(self, rng: random.Random, moves: int) -> tuple[int, ...]:
        s, last = self.goal, None
        undo = {"up": "down", "down": "up", "left": "right", "right": "left"}
        for _ in range(moves):
            a = rng.choice([a for a in self.actions(s) if a != undo.get(last)])
            s, last = self.result(s, a), a
        return s

    def solvable(self, board: tuple[int, ...]) -> bool:
        """Reachable from ``board``: the permutation taking it to the goal is even exactly
        when the blank's distance to its goal square is (each move is one transposition
        and moves the blank one square)."""
        pos = {t: i for i, t in enumerate(board)}
        perm = [pos[t] for t in self.goal]
        seen, parity = [False] * len(perm), 0
        for i in range(len(perm)):  # parity from the cycle lengths
            j, length = i, 0
            while not seen[j]:
                seen[j], j, length = True, perm[j], length + 1
            parity += max(length - 1, 0)
        r, c = divmod(pos[0], self.n)
        gr, gc = self.goal_at[0]
        return parity % 2 == (abs(r - gr) + abs(c - gc)) % 2

    def initial_state(self) -> State:
        return self.start

    def actions(self, state: State) -> Iterable[str]:
        r, c = divmod(state.index(0), self.n)
        out = []
        if r > 0:
            out.append("up")
        if r < self.n - 1:
            out.append("down")
        if c > 0:
            out.append("left")
        if c < self.n - 1:
            out.append("right")
        return out

    def result(self, state: State, action: str) -> State:
        b = state.index(0)
        dr, dc = MOVES[action]
        t = b + dr * self.n + dc
        board = list(state)
        board[b], board[t] = board[t], 0
        return tuple(board)

    def is_goal(self, state: State) -> bool:
        return state == self.goal

    def heuristic(self, state: State, name: str) -> float:
        n = self.n
        if name == "manhattan":
            total = 0
            for i, t in enumerate(state):
                if t:
                    gr, gc = self.goal_at[t]
                    total += abs(i // n - gr) + abs(i % n - gc)
            return float(total)
        if name == "misplaced":
            return float(sum(1 for t, g in zip(state, self.goal) if t and t != g))
        if name == "gaschnig":
            return float(self._gaschnig(state))
        raise KeyError(name)

    def _gaschnig(self, state: State) -> int:
        """Moves to solve the relaxation in which any tile may jump into the blank: while
        the blank is off its square, the tile that belongs there jumps in; once it is home,
        it swaps with any misplaced tile."""
        board = list(state)
        where = {t: i for i, t in enumerate(board)}
        goal_index = {t: i for i, t in enumerate(self.goal)}
        wrong = {t for t in board if t and where[t] != goal_index[t]}
        moves = 0
        while wrong:
            b = where[0]
            if b != goal_index[0]:
                t = self.goal[b]           # the tile that belongs on the blank's square
                wrong.discard(t)
            else:
                t = next(iter(wrong))      # blank is home: move it onto a misplaced tile
            i = where[t]
            board[b], board[i] = t, 0
            where[t], where[0] = b, i
            moves += 1
        if where[0] != goal_index[0]:
            raise AssertionError("blank left off its square")
        return moves

    def goal_state(self) -> State:
        return self.goal

    def predecessors(self, state: State) -> Iterable[State]:
        return [self.result(state, a) for a in self.actions(state)]  # every move is undone by one

    def optimal_cost(self) -> float | None:
        """Moves of a shortest solution, by breadth-first search from the start: for the
        8-puzzle only (the 15-puzzle's space is too large)."""
        if self.n > 3:
            return None
        depth = {self.start: 0}
        todo = deque([self.start])
        while todo:
            s = todo.popleft()
            if s == self.goal:
                return float(depth[s])
            for t in self.predecessors(s):
                if t not in depth:
                    depth[t] = depth[s] + 1
                    todo.append(t)
        return None

    def draw(self, result: SearchResult, path: Any) -> None:
        boards = list(result.path or [self.start])
        step = max(1, math.ceil(len(boards) / 24))
        picked = list(range(0, len(boards), step))
        picked += [len(boards) - 1] if picked[-1] != len(boards) - 1 else []
        shown = [boards[i] for i in picked]
        cols = min(len(shown), 8)
        rows = math.ceil(len(shown) / cols)
        fig = _figure(1.5 * cols, 1.6 * rows + 0.6)
        for k, board in enumerate(shown):
            ax = fig.add_subplot(rows, cols, k + 1)
            for i, t in enumerate(board):
                r, c = divmod(i, self.n)
                home = t != 0 and self.goal[i] == t
                face = "white" if t == 0 else ("palegreen" if home else "lightsteelblue")
                ax.add_patch(_rect(c, self.n - 1 - r, face))
                if t:
                    ax.text(c + 0.5, self.n - 0.5 - r, str(t), ha="center", va="center", fontsize=10)
            ax.set_xlim(0, self.n)
            ax.set_ylim(0, self.n)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title("start" if picked[k] == 0 else f"move {picked[k]}", fontsize=8)
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(color="palegreen", label="tile on its goal square"),
                            Patch(color="lightsteelblue", label="tile elsewhere")],
                   loc="lower center", ncol=2, fontsize=8)
        fig.suptitle(_title(result, f"the {self.n * self.n - 1}-puzzle"), fontsize=9)
        _save(fig, path)


def _rect(x: float, y: float, face: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), 1, 1, facecolor=face, edgecolor="k")
