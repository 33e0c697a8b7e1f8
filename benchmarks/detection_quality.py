"""Train the detectors' default configs on the synthetic shapes and print a quality table.

    python benchmarks/detection_quality.py                        # yolo, yolov1, ssd, faster_rcnn
    python benchmarks/detection_quality.py --models yolo --out benchmarks/results/detection.md
    python benchmarks/detection_quality.py --models ssd -- trainer.max_epochs=4   # extra overrides

For each model: ``python train.py model=X`` (default data ``shapes`` and the model's
recipe), then ``python evaluate.py run=DIR split=val`` on the synthetic validation
split, then inference speed: ``model.predict`` over that split in evaluation batches,
after one warm-up batch. The table has COCO mAP, mAP@0.5, VOC07 AP, training wall
time, inference images/s and the issue's mAP@0.5 target. Run it on an otherwise idle
machine: times are wall-clock. Never part of the test run.
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

MODELS = ("yolo", "yolov1", "ssd", "faster_rcnn")
TARGET_MAP50 = {"yolo": 0.8, "yolov1": 0.6, "ssd": 0.6, "faster_rcnn": 0.6}
TIME_LIMIT_S = 15 * 60


def inference_speed(run: Path, split: str = "val") -> tuple[float, int]:
    """(images/s of ``predict`` on ``split``, parameter count) of a run's best checkpoint."""
    import torch

    from zoo.engine.config import build
    from zoo.engine.run import checkpoint_path, load_model_weights, load_run_config

    cfg = load_run_config(run)
    data = build(cfg.data, "data")
    model = build(cfg.model, "model")
    load_model_weights(model, checkpoint_path(run, None))
    model.eval()
    ds = data.dataset(split)
    bs = data.eval_batch_size
    batches = [data.collate_fn([ds[j] for j in range(i, min(i + bs, len(ds)))])
               for i in range(0, len(ds), bs)]
    with torch.no_grad():
        model.predict(batches[0])
        t0 = time.perf_counter()
        for b in batches:
            model.predict(b)
        dt = time.perf_counter() - t0
    return len(ds) / dt, sum(p.numel() for p in model.parameters())


def run_one(name: str, out_dir: Path, extra: list[str]) -> dict:
    run = out_dir / name
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    train = subprocess.run([sys.executable, str(ROOT / "train.py"), f"model={name}",
                            f"hydra.run.dir={run}", "trainer.progress=false", *extra],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    row: dict = {"model": name, "train_s": wall}
    if train.returncode != 0:
        row["error"] = (train.stderr.strip().splitlines() or ["?"])[-1]
        return row
    summary = json.loads((run / "metrics.json").read_text())
    row["steps"] = summary.get("steps")
    ev = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"run={run}", "split=val"],
                        cwd=ROOT, env=env, capture_output=True, text=True)
    if ev.returncode != 0:
        row["error"] = (ev.stderr.strip().splitlines() or ["?"])[-1]
        return row
    metrics = json.loads((run / "eval_val" / "metrics.json").read_text())
    row.update({k: metrics.get(k) for k in ("map", "map_50", "map_75", "voc07_map")})
    row["images_per_s"], row["params"] = inference_speed(run)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | params | steps | train time | mAP | mAP@0.5 | mAP@0.75 | VOC07 AP | "
             "inference img/s | target mAP@0.5 | met |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error']} |" + " |" * 9)
            continue
        target = TARGET_MAP50.get(r["model"])
        met = (r["map_50"] >= target and r["train_s"] <= TIME_LIMIT_S) if target else None
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['steps']} | {r['train_s'] / 60:.1f} min "
            f"| {r['map']:.3f} | {r['map_50']:.3f} | {r['map_75']:.3f} | {r['voc07_map']:.3f} "
            f"| {r['images_per_s']:.0f} | {target if target is not None else '-'} "
            f"| {'yes' if met else 'no' if met is not None else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--runs", default=str(ROOT / "outputs" / "detection_quality"))
    p.add_argument("--out", default=None, help="also write the table to this markdown file")
    p.add_argument("overrides", nargs="*", help="extra train.py overrides (after --)")
    a = p.parse_args(argv)
    rows = []
    for name in a.models.split(","):
        print(f"training {name} ...", flush=True)
        rows.append(run_one(name, Path(a.runs), a.overrides))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = ("Detection on the synthetic shapes validation split (500 images, 128 px, 5 classes), "
            f"default configs, torch threads: {os.environ.get('OMP_NUM_THREADS', 'default')}.\n\n"
            + table(rows))
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
