"""Nodes expanded on random solvable 8-puzzles: breadth-first search against A* with
each heuristic (misplaced, gaschnig, manhattan), and bidirectional BFS.

Counts, not times, are the measurement (they do not depend on the machine): the
table gives the mean nodes expanded over the instances, the ratio BFS / algorithm, and
the share of instances each heuristic beats misplaced tiles on (dominance: h1 >= h2
everywhere means A* with h1 expands no node with f < C* that h2 would not).

    python benchmarks/search.py              # 30 uniformly drawn instances (about a minute)
    python benchmarks/search.py --quick      # 5 instances

Writes benchmarks/results/search.md (or --output).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.search.informed import AStar  # noqa: E402
from zoo.search.problems import SlidingPuzzle  # noqa: E402
from zoo.search.uninformed import BreadthFirst, Bidirectional  # noqa: E402

ALGOS = {
    "BFS": lambda: BreadthFirst(),
    "bidirectional BFS": lambda: Bidirectional(),
    "A* misplaced": lambda: AStar(heuristic="misplaced"),
    "A* gaschnig (relaxed)": lambda: AStar(heuristic="gaschnig"),
    "A* manhattan": lambda: AStar(heuristic="manhattan"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=30)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "search.md")
    args = ap.parse_args()
    n = 5 if args.quick else args.instances
    expanded: dict[str, list[int]] = {k: [] for k in ALGOS}
    seconds: dict[str, float] = dict.fromkeys(ALGOS, 0.0)
    depths = []
    rng = random.Random(0)
    for seed in range(n):
        p = SlidingPuzzle(seed=seed)
        costs = set()
        for name, make in ALGOS.items():
            t = time.perf_counter()
            r = make().solve(p, rng)
            seconds[name] += time.perf_counter() - t
            expanded[name].append(r.expanded)
            costs.add(r.cost)
        if len(costs) != 1:  # every one of these is optimal on the 8-puzzle
            raise SystemExit(f"instance {seed}: different costs {costs}")
        depths.append(costs.pop())
        print(f"instance {seed}: depth {depths[-1]:g}, " +
              ", ".join(f"{k} {v[-1]}" for k, v in expanded.items()), flush=True)
    bfs = statistics.mean(expanded["BFS"])
    lines = [f"# Nodes expanded on {n} random solvable 8-puzzles",
             "",
             f"Uniformly drawn solvable boards (seeds 0..{n - 1}), optimal depth "
             f"{min(depths):g}..{max(depths):g} (mean {statistics.mean(depths):.1f}); every "
             "algorithm returned the optimal cost on every instance. Written by "
             "`python benchmarks/search.py`.",
             "",
             "| algorithm | mean expanded | min ratio BFS / it | ratio of means | beats misplaced | mean s |",
             "|---|---|---|---|---|---|"]
    for name, v in expanded.items():
        ratios = [b / max(x, 1) for b, x in zip(expanded["BFS"], v)]
        beats = sum(x < m for x, m in zip(v, expanded["A* misplaced"]))
        lines.append(f"| {name} | {statistics.mean(v):.0f} | {min(ratios):.1f}x | "
                     f"{bfs / statistics.mean(v):.1f}x | {beats}/{n} | {seconds[name] / n:.3f} |")
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    print(f"written: {args.output}")


if __name__ == "__main__":
    main()
