"""Evaluation speed: our COCO evaluation against pycocotools, our segmentation metrics
against a straightforward per-image NumPy loop, on the same synthetic data; the numbers
must be identical. Prints markdown tables.

    OMP_NUM_THREADS=1 python benchmarks/eval_speed.py            # 5,000 images
    OMP_NUM_THREADS=1 python benchmarks/eval_speed.py --images 500 --seg-images 50
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seg-images", type=int, default=200)
    ap.add_argument("--seg-classes", type=int, default=21)
    ap.add_argument("--seg-size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    detection(args.images, args.classes, args.batch)
    segmentation(args.seg_images, args.seg_classes, args.seg_size, args.batch)


if __name__ == "__main__":
    main()
