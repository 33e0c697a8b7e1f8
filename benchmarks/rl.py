"""Reinforcement-learning measurements: Sutton & Barto's bandit figures, the tic-tac-toe
table's results, and CartPole return curves for imitation, RL, and the two in sequence.

    python benchmarks/rl.py                      # everything (a few minutes on 2 cores)
    python benchmarks/rl.py part=bandits         # figures 2.2-2.5 on the 10-armed testbed
    python benchmarks/rl.py part=tictactoe
    python benchmarks/rl.py part=cartpole seeds=0,1,2
    python benchmarks/rl.py part=bandits runs=500   # a quicker, noisier testbed

Every row is ``train.py model=M <overrides>`` in its own run directory (in-process),
read back from its ``metrics.json``, ``checkpoints/last.pt`` and TensorBoard scalars.
Figures go to ``benchmarks/results/rl/*.png`` and the tables to
``benchmarks/results/rl.md`` (the parts measured replace their sections). Never part of
the test run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

torch.set_num_threads(1)

RESULTS = ROOT / "benchmarks" / "results" / "rl.md"
FIGURES = ROOT / "benchmarks" / "results" / "rl"
PARTS = ("bandits", "tictactoe", "cartpole")


def train(run: Path, model: str, *overrides: str) -> dict[str, Any]:
    from zoo.cli import train_main

    t0 = time.perf_counter()
    status = train_main([f"model={model}", "trainer.progress=false", f"hydra.run.dir={run}",
                         *overrides], config_dir=ROOT / "zoo" / "configs")
    if status != 0:
        raise SystemExit(f"train.py model={model} {' '.join(overrides)} exited {status}")
    out = json.loads((run / "metrics.json").read_text())
    out["wall_s"] = time.perf_counter() - t0
    return out


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


# ------------------------------------------------------------------------------ bandits
BANDITS = {  # name: (model, overrides)
    "greedy": ("bandit_egreedy", ["model.epsilon=0.0"]),
    "eps=0.01": ("bandit_egreedy", ["model.epsilon=0.01"]),
    "eps=0.1": ("bandit_egreedy", ["model.epsilon=0.1"]),
    "realistic eps=0.1, Q1=0, alpha=0.1": ("bandit_egreedy", ["model.epsilon=0.1", "model.alpha=0.1"]),
    "optimistic greedy, Q1=5, alpha=0.1": ("bandit_optimistic", []),
    "UCB c=2": ("bandit_ucb", []),
    "gradient alpha=0.1, baseline": ("bandit_gradient", ["model.alpha=0.1", "data.true_mean=4"]),
    "gradient alpha=0.4, baseline": ("bandit_gradient", ["model.alpha=0.4", "data.true_mean=4"]),
    "gradient alpha=0.1, no baseline": ("bandit_gradient", ["model.alpha=0.1", "model.baseline=false",
                                                           "data.true_mean=4"]),
    "gradient alpha=0.4, no baseline": ("bandit_gradient", ["model.alpha=0.4", "model.baseline=false",
                                                           "data.true_mean=4"]),
}
FIGURES_2 = {  # figure: (title, rows, which curve)
    "fig2_2_reward": ("Figure 2.2: epsilon-greedy, average reward", ["greedy", "eps=0.01", "eps=0.1"],
                      "average_reward"),
    "fig2_2_optimal": ("Figure 2.2: epsilon-greedy, optimal action", ["greedy", "eps=0.01", "eps=0.1"],
                       "optimal_action_fraction"),
    "fig2_3_optimistic": ("Figure 2.3: optimistic initial values",
                          ["optimistic greedy, Q1=5, alpha=0.1", "realistic eps=0.1, Q1=0, alpha=0.1"],
                          "optimal_action_fraction"),
    "fig2_4_ucb": ("Figure 2.4: UCB vs epsilon-greedy", ["UCB c=2", "eps=0.1"], "average_reward"),
    "fig2_5_gradient": ("Figure 2.5: gradient bandit (true values mean +4)",
                        [k for k in BANDITS if k.startswith("gradient")], "optimal_action_fraction"),
}


def bandits(tmp: Path, runs: int) -> str:
    from zoo.metrics.rl import plot_curves

    curves: dict[str, dict[str, np.ndarray]] = {}
    rows = []
    for name, (model, over) in BANDITS.items():
        run = tmp / re.sub(r"[^a-z0-9]+", "_", name.lower())
        m = train(run, model, "logger=none", f"data.runs={runs}", *over)
        c = {k: np.asarray(v) for k, v in m["curves"].items()}
        curves[name] = c
        rows.append((name, model, " ".join(over), c["average_reward"][-500:].mean(),
                     m["average_reward"], 100 * m["optimal_action_fraction"], m["wall_s"]))
        print(f"{name}: last-500 reward {rows[-1][3]:.3f}", flush=True)
    for fig, (title, names, key) in FIGURES_2.items():
        plot_curves({n: curves[n][key] for n in names}, FIGURES / f"{fig}.png", xlabel="step",
                    ylabel="average reward" if key == "average_reward" else "optimal action",
                    percent=key != "average_reward", title=title,
                    ylim=(0, 100) if key != "average_reward" else None)

    ucb, eps = curves["UCB c=2"]["average_reward"], curves["eps=0.1"]["average_reward"]
    opt = curves["optimistic greedy, Q1=5, alpha=0.1"]["optimal_action_fraction"]
    real = curves["realistic eps=0.1, Q1=0, alpha=0.1"]["optimal_action_fraction"]
    # smoothed over 50 steps: the first step after which optimistic stays ahead
    k = np.ones(50) / 50
    ahead = np.convolve(opt, k, "valid") > np.convolve(real, k, "valid")
    overtakes = next((i + 50 for i in range(len(ahead)) if ahead[i:].all()), None)
    g = {n: curves[n]["optimal_action_fraction"][-500:].mean() for n in curves if n.startswith("gradient")}
    checks = [
        ("UCB's average reward over the last 500 steps beats eps-greedy (eps=0.1)",
         f"{ucb[-500:].mean():.3f} vs {eps[-500:].mean():.3f}", ucb[-500:].mean() > eps[-500:].mean()),
        ("UCB above eps-greedy after the first steps (steps 11-1000, 50-step means)",
         f"{(np.convolve(ucb, k, 'valid')[10:] > np.convolve(eps, k, 'valid')[10:]).mean():.0%} of windows",
         (np.convolve(ucb, k, "valid")[10:] > np.convolve(eps, k, "valid")[10:]).mean() > 0.95),
        ("optimistic greedy overtakes realistic eps-greedy (% optimal) and stays ahead",
         f"from step {overtakes}", overtakes is not None and overtakes < 400),
        ("gradient bandit: the baseline helps (last-500 % optimal, alpha=0.1)",
         f"{100 * g['gradient alpha=0.1, baseline']:.1f}% vs {100 * g['gradient alpha=0.1, no baseline']:.1f}%",
         g["gradient alpha=0.1, baseline"] > g["gradient alpha=0.1, no baseline"]),
    ]
    lines = [f"## Bandits: the 10-armed testbed ({runs} runs x 1000 steps)", "",
             "| learner | config | overrides | reward, last 500 | reward, last 100 | % optimal, last 100 | wall time |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | `{m}` | `{o}` | {a:.3f} | {b:.3f} | {c:.1f} | {w:.0f} s |" for n, m, o, a, b, c, w in rows]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {v} | {'yes' if ok else 'NO'} |" for t, v, ok in checks]
    lines += [""] + [f"![{FIGURES_2[f][0]}](rl/{f}.png)" for f in FIGURES_2] + [""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ tic-tac-toe
def tictactoe(tmp: Path, seeds: list[int]) -> str:
    rows, ok = [], True
    for seed in seeds:
        m = train(tmp / f"ttt{seed}", "tictactoe_value", "logger=none", f"seed={seed}")
        rows.append((seed, m["random_win"], m["random_draw"], m["random_loss"],
                     m["perfect_draw"], m["perfect_loss"], m["wall_s"]))
        ok &= m["random_no_loss"] >= 0.99 and m["perfect_draw"] >= 0.90
    lines = ["## Tic-tac-toe: the value table after 100,000 self-play games", "",
             ("Targets: never loses to the random player in >= 99% of games (1,000 games, half "
             "moving first), draws the perfect minimax player >= 90% (200 games)."), "",
             "| seed | vs random: win | draw | loss | vs perfect: draw | loss | wall time |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {s} | {a:.1%} | {b:.1%} | {c:.1%} | {d:.1%} | {e:.1%} | {w:.0f} s |"
              for s, a, b, c, d, e, w in rows]
    lines += ["", f"Targets met on every seed: {'yes' if ok else 'NO'}.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CartPole
def _first_at(curve: list[tuple[float, float]], level: float) -> float | None:
    return next((x for x, y in curve if y >= level), None)


NOTE = "Notes: BC then RL's 8,000 is its first evaluation (after 2 updates of 8 episodes of 500 steps); the clone itself already balances (BC alone, 0 steps). Its critic is trained alone for the first 10 updates (`model.value_warmup=10`): with an untrained baseline the policy gradient pulled the cloned policy from 500 to about 370 over 120k steps (measured with `model.value_warmup=0`). From the weak clone (one 50-step demonstration) REINFORCE did not reach 475 within the budget on either seed: a confident clone explores little, and from-scratch RL is faster there."


def cartpole(tmp: Path, seeds: list[int], updates: int) -> str:
    from zoo.metrics.rl import plot_curves

    setups = {
        "RL from scratch": ("reinforce_cartpole", []),
        "BC then RL": ("bc_reinforce_cartpole", []),
        "BC then RL, weak clone (1 demonstration of 50 steps)":
            ("bc_reinforce_cartpole", ["data.demonstrations=1", "data.demo_steps=50"]),
    }
    curves: dict[str, list[tuple[float, float]]] = {}
    rows = []
    bc = {}
    for demos in (("2", "100"), ("1", "50")):
        rets = [train(tmp / f"bc{demos[0]}_{demos[1]}_{s}", "bc_cartpole", "logger=none", f"seed={s}",
                      f"data.demonstrations={demos[0]}", f"data.demo_steps={demos[1]}")["mean_return"]
                for s in seeds]
        bc[demos] = float(np.mean(rets))
        rows.append((f"BC alone ({demos[0]} x {demos[1]} expert steps)", "bc_cartpole", 0,
                     bc[demos], "0 (never acts while learning)" if bc[demos] >= 475 else "never"))
    for name, (model, over) in setups.items():
        per_seed = []
        for s in seeds:
            run = tmp / f"{re.sub(r'[^a-z0-9]+', '_', name.lower())}_{s}"
            train(run, model, f"seed={s}", f"data.updates={updates}", "trainer.val_every_steps=2",
                      *over)
            steps = dict(scalars(run, "val/env_steps"))
            ret = scalars(run, "val/mean_return")
            per_seed.append([(steps[k], v) for k, v in ret])
        # the mean over seeds at each validation (same validation steps, different env steps)
        n = min(len(c) for c in per_seed)
        mean = [(float(np.mean([c[i][0] for c in per_seed])), float(np.mean([c[i][1] for c in per_seed])))
                for i in range(n)]
        curves[name] = mean
        reach = [_first_at(c, 475.0) for c in per_seed]
        rows.append((name, model, int(np.mean([c[n - 1][0] for c in per_seed])), mean[-1][1],
                     ", ".join("never" if r is None else f"{int(r):,}" for r in reach)))
        print(f"{name}: reaches 475 at {reach}", flush=True)
    xmax = max(x for c in curves.values() for x, _ in c)
    plot = {f"BC alone ({d[0]} x {d[1]} expert steps)": [bc[d], bc[d]] for d in bc}
    xs = {k: [0, xmax] for k in plot}
    for k, c in curves.items():
        plot[k] = [y for _, y in c]
        xs[k] = [x for x, _ in c]
    plot_curves(plot, FIGURES / "cartpole_returns.png", x=xs, xlabel="environment steps of the learner",
                ylabel="mean greedy return (20 episodes)", title="CartPole-v1: imitation, RL, and both",
                ylim=(0, 510), hline=475)

    def reached(name: str) -> list[float]:
        return [float(x.replace(",", "")) if x != "never" else float("inf")
                for x in next(r[4] for r in rows if r[0] == name).split(", ")]

    bc_rl, rl = reached("BC then RL"), reached("RL from scratch")
    ok = all(a < b for a, b in zip(bc_rl, rl))
    lines = [f"## CartPole-v1: behaviour cloning, REINFORCE, and BC then REINFORCE (seeds {seeds})", "",
             ("Return: mean over 20 greedy evaluation episodes (500 at most), scored every 2 "
             "updates; environment steps count the learner's own interaction (the expert's "
             "demonstrations are 200 steps, or 50 for the weak clone)."), "",
             "| learner | config | env steps trained | final return (seed mean) | env steps to reach 475, per seed |",
             "|---|---|---|---|---|"]
    lines += [f"| {a} | `{b}` | {c:,} | {d:.1f} | {e} |" for a, b, c, d, e in rows]
    lines += ["", (f"Target: BC then RL reaches 475 in fewer environment steps than RL alone, on every "
              f"seed: {'yes' if ok else 'NO'}."), "", NOTE, "", "![CartPole return curves](rl/cartpole_returns.png)", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main
def write(sections: dict[str, str]) -> None:
    old = RESULTS.read_text() if RESULTS.is_file() else ""
    parts = dict(re.findall(r"<!-- rl:(\w+) -->\n(.*?)<!-- /rl:\1 -->\n", old, flags=re.DOTALL))
    parts.update(sections)
    text = ["# Reinforcement learning", "",
            "Written by `python benchmarks/rl.py` (one torch thread per run, a shared 2-core CPU).", ""]
    for p in PARTS:
        if p in parts:
            text += [f"<!-- rl:{p} -->", parts[p].rstrip("\n"), f"<!-- /rl:{p} -->", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(text))


def main(argv: list[str]) -> int:
    opts = dict(a.split("=", 1) for a in argv if "=" in a)
    parts = opts.get("part", "all")
    parts = list(PARTS) if parts == "all" else parts.split(",")
    bad = [p for p in parts if p not in PARTS]
    if bad:
        print(f"error: unknown part {bad[0]}; valid: all, {', '.join(PARTS)}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in opts.get("seeds", "0,1").split(",")]
    FIGURES.mkdir(parents=True, exist_ok=True)
    sections = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "bandits" in parts:
            sections["bandits"] = bandits(tmp, int(opts.get("runs", 2000)))
        if "tictactoe" in parts:
            sections["tictactoe"] = tictactoe(tmp, seeds)
        if "cartpole" in parts:
            sections["cartpole"] = cartpole(tmp, seeds, int(opts.get("updates", 40)))
    write(sections)
    print(f"written: {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
