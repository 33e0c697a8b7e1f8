"""Local search against problem size: success rate and steps to a solution.

Every algorithm is built from its shipped config (``configs/algo/NAME.yaml``) and run
from seeds 0..trials-1 on N-queens (8 to 200 queens; solved = no attacking pair) and on
random TSPs (6 to 9 cities: solved = the brute-force optimum; 20 and 50 cities: no goal,
the mean tour length is compared with the best any algorithm found). Steps are each
algorithm's own loop iterations (a move, a draw, a generation; summed over restarts),
averaged over the solved runs; seconds are per run.

    python benchmarks/local_search.py            # the table and plot (about 2 minutes)
    python benchmarks/local_search.py --quick    # a smoke run (seconds)

Writes benchmarks/results/local_search.md, benchmarks/results/local_search.png and (a full
run) the N-queens table between README.md's ``local-search-table`` markers.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omegaconf import OmegaConf

from zoo.engine.config import build
from zoo.search.local_problems import TSP, QueensLocal

QUEENS = [8, 16, 32, 64, 100, 200]
# algorithm -> largest N-queens it is run on (beyond, a run takes seconds and fails)
QUEENS_ALGOS = {"hill_climbing": 200, "sideways": 200, "stochastic_hc": 200, "first_choice": 200,
                "random_restart": 200, "random_restart (no sideways)": 32, "annealing": 200,
                "beam": 200, "stochastic_beam": 64, "genetic": 16}
# label -> (config, overrides) where the label is not the config's name
VARIANTS = {"random_restart (no sideways)": ("random_restart", {"algorithm": {"max_sideways": 0}})}
TSP_SIZES = [6, 8, 9, 20, 50]
TSP_ALGOS = ["hill_climbing", "first_choice", "random_restart", "annealing", "beam", "genetic"]
# TSPs beyond 9 cities have no goal: restarts would all be spent, so they are capped
TSP_OVERRIDES = {"random_restart": {"restarts": 50}, "annealing": {"t0": 0.2, "alpha": 0.9998}}


def trials_for(n: int, quick: bool) -> int:
    if quick:
        return 2
    return 20 if n <= 16 else 10 if n <= 64 else 5


def algorithm(name: str, **overrides):
    cfg = OmegaConf.load(ROOT / "zoo" / "configs" / "algo" / f"{name}.yaml")
    cfg.merge_with(overrides)
    return build(cfg, "algo")


def run(name: str, make_problem, seeds: range, **overrides) -> dict:
    solved, steps, restarts, secs, costs = [], [], [], [], []
    for seed in seeds:
        p = make_problem(seed)
        p.optimal_cost()            # a TSP's brute force is the problem's set-up, not the search
        a = algorithm(name, **overrides)
        t = time.perf_counter()
        r = a.solve(p, random.Random(seed))
        secs.append(time.perf_counter() - t)
        solved.append(r.solved)
        costs.append(r.cost)
        if r.solved:
            steps.append(r.extra["steps"])
            restarts.append(r.extra["restarts"])
    return {"success": sum(solved) / len(solved), "steps": statistics.mean(steps) if steps else None,
            "restarts": statistics.mean(restarts) if restarts else None,
            "seconds": statistics.mean(secs), "cost": statistics.mean(costs), "costs": costs,
            "runs": len(solved)}


def fmt(x, spec: str = ".0f") -> str:
    return "—" if x is None else format(x, spec)


def queens_table(quick: bool) -> tuple[list[str], dict]:
    sizes = QUEENS[:2] if quick else QUEENS
    rows = ["| algorithm | n | runs | solved | steps to solution | restarts | s / run |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    curves: dict[str, list[tuple[int, dict]]] = {}
    for name, top in QUEENS_ALGOS.items():
        for n in sizes:
            if n > top:
                continue
            config, overrides = VARIANTS.get(name, (name, {}))
            r = run(config, lambda seed, n=n: QueensLocal(n), range(trials_for(n, quick)), **overrides)
            curves.setdefault(name, []).append((n, r))
            rows.append(f"| {name} | {n} | {r['runs']} | {r['success']:.0%} | {fmt(r['steps'])} | "
                        f"{fmt(r['restarts'], '.1f')} | {r['seconds']:.3f} |")
            print(rows[-1], flush=True)
    return rows, curves


def tsp_table(quick: bool) -> list[str]:
    sizes = TSP_SIZES[:2] if quick else TSP_SIZES
    rows = ["| algorithm | cities | runs | optimal | mean length | vs best found | s / run |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for n in sizes:
        results = {name: run(name, lambda seed, n=n: TSP(n, seed=seed), range(trials_for(n, quick)),
                             **TSP_OVERRIDES.get(name, {})) for name in TSP_ALGOS}
        # per instance (seed), the shortest tour any algorithm found
        best = [min(r["costs"][i] for r in results.values()) for i in range(len(next(iter(results.values()))["costs"]))]
        for name, r in results.items():
            ratio = statistics.mean(c / b for c, b in zip(r["costs"], best, strict=True))
            opt = f"{r['success']:.0%}" if n <= 9 else "—"
            rows.append(f"| {name} | {n} | {r['runs']} | {opt} | {r['cost']:.4f} | "
                        f"{(ratio - 1):+.1%} | {r['seconds']:.3f} |")
            print(rows[-1], flush=True)
    return rows


def pivot(curves: dict) -> list[str]:
    """Success rate (and mean steps of the solved runs) per algorithm and N."""
    sizes = sorted({n for pts in curves.values() for n, _ in pts})
    rows = ["| algorithm | " + " | ".join(f"N={n}" for n in sizes) + " |",
            "|---|" + "---:|" * len(sizes)]
    for name, pts in curves.items():
        by = dict(pts)
        cells = [f"{by[n]['success']:.0%} ({fmt(by[n]['steps'])})" if n in by else "—" for n in sizes]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def plot(curves: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.5))
    axes = fig.subplots(1, 3)
    sizes = sorted({n for pts in curves.values() for n, _ in pts})
    for i, (name, pts) in enumerate(curves.items()):
        style = {"color": f"C{i}", "marker": "o", "label": name}
        ns = [n for n, _ in pts]
        axes[0].plot(ns, [r["success"] for _, r in pts], **style)
        solved = [(n, r["steps"]) for n, r in pts if r["steps"] is not None]
        if solved:
            axes[1].plot(*zip(*solved, strict=True), **style)
        axes[2].plot(ns, [r["seconds"] for _, r in pts], **style)
    axes[0].set_ylabel("success rate")
    axes[0].set_ylim(-0.05, 1.05)
    axes[1].set_ylabel("steps to solution (solved runs)")
    axes[2].set_ylabel("seconds per run")
    for ax, title in zip(axes, ["Success rate", "Steps to solution", "Time per run"], strict=True):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_xlabel("N (queens)")
        ax.set_title(f"N-queens: {title.lower()}")
        if ax is not axes[0]:
            ax.set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=5,
               fontsize=9, title="algorithm")
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two sizes, two runs each")
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "local_search.md")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    qrows, curves = queens_table(args.quick)
    trows = tsp_table(args.quick)
    png = args.output.with_suffix(".png")
    plot(curves, png)
    text = "\n".join([
        "# Local search: success rate and steps vs problem size",
        "",
        (f"`python benchmarks/local_search.py{' --quick' if args.quick else ''}`, shipped configs "
         f"(`configs/algo/`), seeds 0..runs-1; Python {platform.python_version()}, "
         f"{time.perf_counter() - t0:.0f} s in all. Steps are each algorithm's loop iterations "
         "(hill climbing: moves; first choice and annealing: draws; beams: pooled selections; "
         "genetic: generations; random restart: summed over its runs), averaged over solved runs."),
        "",
        "## N-queens (solved = no attacking pair)",
        "",
        "Solved runs (mean steps to solution):",
        "",
        *pivot(curves),
        "",
        *qrows,
        "",
        "## TSP (random cities in the unit square, 2-opt moves; optimal = the brute-force optimum)",
        "",
        (f"Annealing uses {TSP_OVERRIDES['annealing']} and random restart "
         f"{TSP_OVERRIDES['random_restart']} here; \"vs best found\" is the mean excess length over "
         "the shortest tour any algorithm found on that instance."),
        "",
        *trows,
        "",
        f"![local search]({png.name})",
        "",
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} and {png}")
    if not args.quick:
        update_readme(pivot(curves))
    return 0


def update_readme(rows: list[str], marker: str = "local-search-table") -> None:
    """Put ``rows`` between README.md's ``<!-- marker -->`` and ``<!-- /marker -->``."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, sep, rest = text.partition(f"<!-- {marker} -->\n")
    _, end, tail = rest.partition(f"<!-- /{marker} -->")
    if not sep or not end:
        return
    readme.write_text(head + sep + "\n".join(rows) + "\n" + end + tail)
    print(f"updated {readme}'s {marker}")


if __name__ == "__main__":
    raise SystemExit(main())
