"""Evaluation speed: our COCO evaluation against pycocotools, our segmentation metrics
against a straightforward per-image NumPy loop, on the same synthetic data; the numbers
must be identical. Prints markdown tables.

``files``: scoring COCO json files end to end, each tool as a fresh process timed from
start to exit (imports, json parsing, checks, evaluation, printing; ours also writes
metrics.json and its two plots): ``evaluate.py task=detection`` against pycocotools'
and faster-coco-eval's own documented file usage (``COCO(gt)``, ``loadRes(results)``,
evaluate, accumulate, summarize), run in turns, ``--repeats`` times each; the median
counts. The 12 summary numbers of the three must agree.

    OMP_NUM_THREADS=1 python benchmarks/eval_speed.py            # everything, 5,000 images
    OMP_NUM_THREADS=1 python benchmarks/eval_speed.py --images 500 --seg-images 50
    python benchmarks/eval_speed.py --only files                # 4,000 images, ~134k detections
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "metrics"))

from coco_synth import random_detection_set, reference_inputs

from zoo.metrics.detection import DetectionEvaluator, coco_evaluate
from zoo.metrics.segmentation import SegmentationEvaluator

KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
        "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def pycocotools_run(gt: dict, results: list) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:12])


def detection(n_images: int, num_classes: int, batch: int) -> list[str]:
    (preds, targets), t_gen = timed(lambda: random_detection_set(
        0, n_images, num_classes, mean_objects=8, mean_detections=60, size=640))
    gt, results = reference_inputs(preds, targets, num_classes)
    n_obj, n_det = len(gt["annotations"]), len(results)
    print(f"synthetic set: {n_images} images, {n_obj} objects, {n_det} detections "
          f"({num_classes} classes, generated in {t_gen:.1f} s)\n", flush=True)

    ref, t_ref = timed(lambda: pycocotools_run(copy.deepcopy(gt), copy.deepcopy(results)))
    ours_files, t_files = timed(lambda: coco_evaluate(copy.deepcopy(gt), copy.deepcopy(results)))

    def from_tensors(protocols):
        ev = DetectionEvaluator(num_classes, protocols=protocols)
        for i in range(0, n_images, batch):
            ev.update(preds[i:i + batch], (None, targets[i:i + batch]))
        return ev.compute()

    ours_coco, t_tensor = timed(lambda: from_tensors(("coco",)))
    ours_all, t_all = timed(lambda: from_tensors(("coco", "voc07", "voc12")))
    ours_devkit, t_devkit = timed(lambda: from_tensors(("voc07_devkit",)))
    s_files = ours_files.summary()
    diff_files = max(abs(s_files[k] - r) for k, r in zip(KEYS, ref))
    diff_tensor = max(abs(ours_coco[k] - r) for k, r in zip(KEYS, ref))
    rows = [
        "| COCO bbox evaluation | time (s) | vs pycocotools | max abs diff of the 12 numbers |",
        "|---|---|---|---|",
        f"| pycocotools 2.0 (COCO, loadRes, evaluate, accumulate, summarize) | {t_ref:.2f} | 1.0x | - |",
        (f"| ours, from COCO-format dicts (`coco_evaluate`) | {t_files:.2f} | {t_ref / t_files:.1f}x | "
         f"{diff_files:.1e} |"),
        (f"| ours, from tensors (`DetectionEvaluator` update+compute, COCO only) | {t_tensor:.2f} | "
         f"{t_ref / t_tensor:.1f}x | {diff_tensor:.1e} |"),
        f"| ours, from tensors, COCO + VOC07 + VOC12 | {t_all:.2f} | {t_ref / t_all:.1f}x | - |",
        f"| ours, from tensors, VOC07 devkit only | {t_devkit:.2f} | {t_ref / t_devkit:.1f}x | - |",
    ]
    print("\n".join(rows))
    print(f"\nmap {ours_coco['map']:.4f}, map_50 {ours_coco['map_50']:.4f}, "
          f"voc07_map {ours_all['voc07_map']:.4f}, voc12_map {ours_all['voc12_map']:.4f}, "
          f"voc07_devkit_map {ours_devkit['voc07_devkit_map']:.4f}\n")
    return rows


def numpy_loop(preds: list[np.ndarray], targets: list[np.ndarray], c: int, ignore: int) -> dict:
    """The straightforward way: per image, per class, three boolean sums."""
    inter, pred, true = np.zeros(c, np.int64), np.zeros(c, np.int64), np.zeros(c, np.int64)
    for p, t in zip(preds, targets):
        valid = t != ignore
        for k in range(c):
            pk, tk = (p == k) & valid, t == k
            inter[k] += np.count_nonzero(pk & tk)
            pred[k] += np.count_nonzero(pk)
            true[k] += np.count_nonzero(tk)
    union = pred + true - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
        dice = 2 * inter / (pred + true)
    present = union > 0
    return {"miou": float(iou[present].mean()), "mdice": float(dice[present].mean()),
            "pixel_accuracy": float(inter.sum() / true.sum())}


def segmentation(n_images: int, c: int, size: int, batch: int) -> list[str]:
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, c, (n_images, size, size), generator=g)
    targets[:, : size // 8] = 255
    noise = torch.randint(0, c, targets.shape, generator=g)
    preds = torch.where(torch.rand(targets.shape, generator=g) < 0.7, targets % 255, noise)
    p_np = [p.numpy() for p in preds]
    t_np = [t.numpy() for t in targets]
    ref, t_ref = timed(lambda: numpy_loop(p_np, t_np, c, 255))

    def ours():
        ev = SegmentationEvaluator(c)
        for i in range(0, n_images, batch):
            ev.update(preds[i:i + batch], (None, targets[i:i + batch]))
        return ev.compute()

    m, t_ours = timed(ours)
    diff = max(abs(m[k] - ref[k]) for k in ref)
    rows = [
        (f"| Segmentation metrics ({n_images} images {size}x{size}, {c} classes) | time (s) | "
         f"speed-up | max abs diff |"),
        "|---|---|---|---|",
        f"| per-image NumPy loop (per class: 3 boolean sums) | {t_ref:.2f} | 1.0x | - |",
        (f"| ours (`SegmentationEvaluator`, one bincount per batch of {batch}) | {t_ours:.2f} | "
         f"{t_ref / t_ours:.1f}x | {diff:.1e} |"),
    ]
    print("\n".join(rows) + "\n")
    return rows


# Each library's own end-to-end use on files; prints the 12 summary numbers as json last.
_LIBRARY_SCRIPT = """
import contextlib, io, json, sys
{imports}
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1])
    ev = {evaluator}(gt, gt.loadRes(sys.argv[2]), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
print(json.dumps([float(x) for x in ev.stats[:12]]))
"""
LIBRARIES = {
    "pycocotools": _LIBRARY_SCRIPT.format(
        imports="from pycocotools.coco import COCO\nfrom pycocotools.cocoeval import COCOeval",
        evaluator="COCOeval"),
    "faster-coco-eval": _LIBRARY_SCRIPT.format(
        imports="from faster_coco_eval import COCO, COCOeval_faster", evaluator="COCOeval_faster"),
}


def _timed_process(cmd: list[str], env: dict[str, str], mark: str | None = None
                   ) -> tuple[float, float | None, str]:
    """(seconds from start to exit, seconds until ``mark`` began a line of stdout, stdout)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    seen, data, needle = None, b"\n", ("\n" + (mark or "")).encode()
    while chunk := os.read(proc.stdout.fileno(), 1 << 16):
        data += chunk
        if seen is None and mark and needle in data:
            seen = time.perf_counter() - t
    err = proc.stderr.read().decode()
    if proc.wait() != 0:
        raise SystemExit(f"{cmd[:3]} failed: {err[-2000:]}")
    return time.perf_counter() - t, seen, data.decode()


def files(n_images: int, mean_detections: float, num_classes: int, repeats: int) -> list[str]:
    (preds, targets), _ = timed(lambda: random_detection_set(
        1, n_images, num_classes, mean_objects=8, mean_detections=mean_detections, size=640))
    gt, results = reference_inputs(preds, targets, num_classes)
    tmp = Path(tempfile.mkdtemp(prefix="zoo-eval-files-"))
    gt_path, res_path = tmp / "instances.json", tmp / "results.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(results))
    mb = (gt_path.stat().st_size + res_path.stat().st_size) / 2**20
    print(f"files: {n_images} images, {len(gt['annotations'])} objects, {len(results)} detections "
          f"({num_classes} classes, {mb:.0f} MB of json) in {tmp}\n", flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    zoo = [sys.executable, str(ROOT / "evaluate.py"), "task=detection", f"gt={gt_path}",
           f"predictions={res_path}", f"output={tmp / 'zoo'}"]
    commands = {
        "zoo": zoo,
        "zoo plots=false": [*zoo, "plots=false"],
        **{name: [sys.executable, "-c", script, str(gt_path), str(res_path)]
           for name, script in LIBRARIES.items()},
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    numbers_at: list[float] = []
    stats: dict[str, list[float]] = {}
    for _ in range(repeats):  # in turns, so a change in the machine's load hits them all
        for name, cmd in commands.items():
            total, seen, out = _timed_process(cmd, env, "wrote " if name == "zoo" else None)
            times[name].append(total)
            if name == "zoo":
                numbers_at.append(seen)
            if name.startswith("zoo"):
                m = json.loads((tmp / "zoo" / "metrics.json").read_text())
                stats[name] = [m[k] for k in KEYS]
            else:
                stats[name] = json.loads(out.strip().splitlines()[-1])
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = max(abs(a - b) for other in stats for a, b in zip(stats["zoo"], stats[other]))
    py, fce, ours = med["pycocotools"], med["faster-coco-eval"], med["zoo plots=false"]
    drawn, numbers = med["zoo"], statistics.median(numbers_at)
    rows = [
        (f"| COCO bbox from json files, end to end ({n_images} images, {len(results)} detections; "
         f"median of {repeats}) | time (s) | vs pycocotools | vs faster-coco-eval |"),
        "|---|---|---|---|",
        f"| pycocotools 2.0 (`COCO(gt)`, `loadRes`, evaluate, accumulate, summarize) | {py:.2f} | 1.0x | - |",
        (f"| faster-coco-eval {_version('faster_coco_eval')} (the same calls, `COCOeval_faster`) | "
         f"{fce:.2f} | {py / fce:.1f}x | 1.0x |"),
        (f"| zoo: `evaluate.py task=detection gt=... predictions=... plots=false` (metrics.json) | "
         f"{ours:.2f} | {py / ours:.1f}x | {ours / fce:.2f}x its time |"),
        (f"| zoo, the default (metrics.json, then pr_curves.png and ap_per_class.png) | "
         f"{drawn:.2f} | {py / drawn:.1f}x | {drawn / fce:.2f}x its time |"),
        (f"| zoo, the default, until the numbers are printed and written | "
         f"{numbers:.2f} | {py / numbers:.1f}x | {numbers / fce:.2f}x its time |"),
    ]
    print("\n".join(rows))
    print("\nall runs (s): " + "; ".join(f"{k} {', '.join(f'{t:.2f}' for t in v)}"
                                          for k, v in times.items()))
    print(f"max abs diff of the 12 numbers, zoo (both runs) vs both libraries: {diff:.1e}\n")
    _write_files_table(rows, times, diff, n_images, len(gt["annotations"]), len(results))
    return rows


def _write_files_table(rows: list[str], times: dict[str, list[float]], diff: float,
                       n_images: int, n_objects: int, n_dets: int) -> None:
    import platform

    runs = "; ".join(f"{k}: {', '.join(f'{t:.1f}' for t in v)}" for k, v in times.items())
    text = "\n".join([
        "# Scoring COCO json files, end to end",
        "",
        f"`python benchmarks/eval_speed.py --only files`: {n_images} images, {n_objects} objects, "
        f"{n_dets} detections (synthetic, 20 classes), each tool a fresh process timed from start "
        f"to exit, in turns; Python {platform.python_version()}, {os.cpu_count()} CPUs. Measured "
        "on a shared, loaded machine (other jobs ran beside it): the times are inflated and "
        "noisy, the ratios (taken within the same turns) are what to read.",
        "",
        *rows,
        "",
        f"All runs (s), in order: {runs}. The 12 summary numbers of zoo and both libraries "
        f"agree to {diff:.0e}.",
        "",
    ])
    out = ROOT / "benchmarks" / "results" / "eval_files.md"
    out.write_text(text)
    print(f"written: {out}")


def _version(module: str) -> str:
    from importlib.metadata import version

    try:
        return version(module.replace("_", "-"))
    except Exception:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("all", "detection", "segmentation", "files"), default="all")
    ap.add_argument("--files-images", type=int, default=4000)
    ap.add_argument("--files-detections", type=float, default=32.0,
                    help="mean detections per image of the files set (32: about 134k in all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seg-images", type=int, default=200)
    ap.add_argument("--seg-classes", type=int, default=21)
    ap.add_argument("--seg-size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.only in ("all", "detection"):
        detection(args.images, args.classes, args.batch)
    if args.only in ("all", "segmentation"):
        segmentation(args.seg_images, args.seg_classes, args.seg_size, args.batch)
    if args.only in ("all", "files"):
        files(args.files_images, args.files_detections, args.classes, args.repeats)


if __name__ == "__main__":
    main()
