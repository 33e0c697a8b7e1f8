"""The lessons of the linear models, measured through train.py / evaluate.py:
closed form vs gradient descent vs ridge vs lasso on the synthetic regression set
(test MSE, R², how many weights are exactly zero), and logistic regression vs MLP on
XOR and two moons (test accuracy).

    python benchmarks/classic_quality.py [--runs /tmp/zoo-classic] [--out FILE.md]

Each row is ``python train.py model=M data=D <overrides>`` then ``python evaluate.py
run=DIR``; wall time is the training command's. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

ROWS = [
    ("linear_regression", "regression", []),
    ("linear_regression", "regression", ["model.solver=gd"]),
    ("linear_regression", "regression", ["model.l2=10"]),
    ("linear_regression", "regression", ["model.solver=gd", "model.l1=20"]),
    # more features (60) than training samples (30): only ridge or the lasso make sense
    ("linear_regression", "regression", ["data.num_samples=50", "data.num_features=60"]),
    ("linear_regression", "regression", ["data.num_samples=50", "data.num_features=60",
                                         "model.l2=1"]),
    ("linear_regression", "regression", ["data.num_samples=50", "data.num_features=60",
                                         "model.solver=gd", "model.l1=5", "data.batch_size=64"]),
    ("logistic_regression", "xor", []),
    ("mlp", "xor", []),
    ("logistic_regression", "moons", []),
    ("mlp", "moons", []),
]


def run(model: str, data: str, overrides: list[str], runs: Path, i: int) -> dict:
    run_dir = runs / f"{i:02d}_{model}_{data}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "train.py", f"model={model}", f"data={data}", *overrides,
                    f"hydra.run.dir={run_dir}", "trainer.progress=false", "logger=none"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    subprocess.run([sys.executable, "evaluate.py", f"run={run_dir}"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    metrics = json.loads((run_dir / "eval_test" / "metrics.json").read_text())
    row = {"model": model, "data": data, "overrides": " ".join(overrides) or "(default)",
           "wall_s": wall, **metrics}
    state = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    if "linear.weight" in state and model == "linear_regression":
        w = state["linear.weight"].flatten()
        row["zero_weights"] = f"{int((w == 0).sum())}/{w.numel()}"
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | data | overrides | test accuracy | test MSE | test R² | zero weights | wall |",
             "|---|---|---|---|---|---|---|---|"]

    def f(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else "–"

    for r in rows:
        lines.append(f"| {r['model']} | {r['data']} | {r['overrides']} | {f(r.get('accuracy'))} | "
                     f"{f(r.get('mse'))} | {f(r.get('r2'))} | {r.get('zero_weights', '–')} | "
                     f"{r['wall_s']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="/tmp/zoo-classic")
    ap.add_argument("--out", default="", help="also write the table to this file")
    args = ap.parse_args()
    runs = Path(args.runs) / time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for i, (model, data, overrides) in enumerate(ROWS):
        rows.append(run(model, data, overrides, runs, i))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
