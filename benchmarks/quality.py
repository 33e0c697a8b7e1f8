"""Train every model's default config and write a markdown quality table.

    python benchmarks/quality.py                       # every configs/model/*.yaml
    python benchmarks/quality.py --models lenet,resnet18 --out benchmarks/results/quality.md
    python benchmarks/quality.py --models lenet -- trainer.max_epochs=5   # extra overrides

For each model: ``python train.py model=X`` (its default data and recipe), then
``python evaluate.py run=DIR split=test`` (``val`` where the data has no test split);
the table reports the run's monitored metric on that split, the wall time of
training, and the number of parameters. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def count_parameters(run: Path) -> int:
    from zoo.engine.config import build
    from zoo.engine.run import load_run_config

    model = build(load_run_config(run).model, "model")
    return sum(p.numel() for p in model.parameters())


def run_one(name: str, out_dir: Path, extra: list[str], timeout: float) -> dict:
    run = out_dir / name
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    train = subprocess.run([sys.executable, str(ROOT / "train.py"), f"model={name}",
                            f"hydra.run.dir={run}", "trainer.progress=false", *extra],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    row = {"model": name, "wall_s": wall, "status": "ok" if train.returncode == 0 else "failed"}
    if train.returncode != 0:
        row["error"] = (train.stderr.strip().splitlines() or ["?"])[-1]
        return row
    summary = json.loads((run / "metrics.json").read_text())
    cfg_choices = (run / "config.yaml").read_text()
    row["data"] = _choice(cfg_choices, "data")
    row["monitor"] = summary.get("monitor")
    row["params"] = count_parameters(run)
    for split in ("test", "val"):
        out = run / f"eval_{split}" / "metrics.json"
        ev = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"run={run}", f"split={split}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if ev.returncode == 0 and out.is_file():
            metrics = json.loads(out.read_text())
            row["split"] = split
            row["value"] = metrics.get(row["monitor"])
            break
    return row


def _choice(config_yaml: str, group: str) -> str:
    import yaml

    cfg = yaml.safe_load(config_yaml)
    return str(cfg.get("run_info", {}).get("choices", {}).get(group, "?"))


def table(rows: list[dict]) -> str:
    lines = ["| model | data | metric | split | value | wall time | parameters |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | – | – | – | failed: {r.get('error', '')[:60]} | "
                         f"{r['wall_s']:.0f} s | – |")
            continue
        v = r.get("value")
        value = f"{v:.4f}" if isinstance(v, (int, float)) else "–"
        lines.append(f"| {r['model']} | {r.get('data', '?')} | {r.get('monitor')} | "
                     f"{r.get('split', '?')} | {value} | {r['wall_s']:.0f} s | {r.get('params', 0):,} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated model configs (default: all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.md"))
    ap.add_argument("--runs", default="/tmp/zoo-quality", help="where the run directories go")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per model")
    ap.add_argument("overrides", nargs="*", help="extra train.py overrides for every model")
    args = ap.parse_args()
    names = [m for m in args.models.split(",") if m] or sorted(
        p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))
    out_dir = Path(args.runs) / time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for name in names:
        print(f"training {name} ...", flush=True)
        try:
            rows.append(run_one(name, out_dir, args.overrides, args.timeout))
        except subprocess.TimeoutExpired:
            rows.append({"model": name, "wall_s": args.timeout, "status": "failed", "error": "timeout"})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(f"Default configs, {os.cpu_count()} CPU cores, "
                              f"{time.strftime('%Y-%m-%d')}.\n\n{text}\n")
    print(text)


if __name__ == "__main__":
    main()
