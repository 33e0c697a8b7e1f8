"""``evaluate.py`` on prediction files: any detector's or segmenter's output, no model.

Detection (COCO formats)::

    python evaluate.py task=detection gt=instances.json predictions=results.json \\
        [iou_type=bbox|segm|keypoints] [protocol=coco|voc07|voc12|voc07_devkit|all] [sigmas=0.05,...] \\
        [backend=faster_coco_eval|pycocotools] [output=PATH]

``gt`` is a COCO instances file (``images``, ``annotations``, ``categories``);
``predictions`` the COCO results list (``image_id``, ``category_id``, ``score`` and
``bbox`` [x, y, w, h] / ``segmentation`` RLE / ``keypoints``). The COCO numbers are
those of the official evaluation (see ``zoo.metrics.detection``); ``protocol`` may
list several, comma-separated. The files are checked entry by entry and scored by
``zoo.metrics.detection.coco_files``.

Segmentation (label PNGs)::

    python evaluate.py task=segmentation gt=DIR predictions=DIR num_classes=N \\
        [ignore_index=255] [class_names=a,b,...] [output=PATH]

Files are paired by their path relative to each folder, without the extension;
each is a single-channel (grey or palette) PNG of class indices.

Both print a table and write ``metrics.json`` (to ``output``: a ``.json`` path, or a
folder; default beside the predictions) and PNG plots beside it. Unreadable or
mismatched inputs raise ``UserError`` with one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import UserError, choices

# Kept for callers that list the keys; the task registry (zoo.tasks) is what dispatches.
DETECTION_KEYS = {"task", "gt", "predictions", "iou_type", "protocol", "output", "sigmas", "backend"}
SEGMENTATION_KEYS = {"task", "gt", "predictions", "num_classes", "ignore_index", "class_names", "output"}


def evaluate_files(options: dict[str, str]) -> dict[str, Any]:
    """Score prediction files against ground truth; print, write metrics.json and plots.

    ``options["task"]`` names a task of ``zoo.tasks`` that scores files (its
    ``file_options`` are the valid keys, its ``score_files`` reads and scores them)."""
    from zoo.tasks import all_tasks, get_task

    name = options.get("task")
    scorers = [t.name for t in all_tasks() if t.file_options]
    if name not in scorers:
        raise UserError(f"unknown task '{name}'; valid tasks: {choices(scorers)}")
    task = get_task(name)
    allowed = {"task", *task.file_options}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UserError(f"unknown option '{unknown[0]}' for task={name}; valid options: {choices(allowed)}")
    for key, opt in task.file_options.items():
        if opt.required and not options.get(key):
            raise UserError(f"task={name} needs {key}=PATH" if key in ("gt", "predictions")
                            else f"task={name} needs {opt.usage(key)}")
    metrics, plotter = task.score_files(options)
    out = _output_path(options)
    from zoo.engine.utils import format_table, write_json

    result = {"task": name, "gt": str(Path(options["gt"])), "predictions": str(Path(options["predictions"])),
              **metrics}
    write_json(out, result)
    plots = plotter(out.parent)
    print(format_table(metrics, f"{name}: {options['predictions']}"))
    print(_per_class_table(metrics.get("per_class", {})))
    if metrics.get("absent_classes"):
        print(f"absent everywhere (left out of the means): {', '.join(metrics['absent_classes'])}")
    print(f"wrote {out}" + "".join(f", {p.name}" for p in plots))
    return result


def _output_path(options: dict[str, str]) -> Path:
    if options.get("output"):
        out = Path(options["output"])
        return out if out.suffix == ".json" else out / "metrics.json"
    pred = Path(options["predictions"])
    return (pred if pred.is_dir() else pred.parent) / "metrics.json"


_COLUMNS = ("ap", "ap50", "ap75", "ar", "voc07_ap", "voc12_ap", "voc07_devkit_ap", "num_gt", "iou", "dice")


def _per_class_table(per_class: dict[str, dict[str, Any]]) -> str:
    if not per_class:
        return ""
    present = {k for v in per_class.values() for k in v}
    cols = [k for k in _COLUMNS if k in present] + sorted(present - set(_COLUMNS))
    w = max(len(n) for n in per_class)
    lines = ["  " + f"{'class':<{w}}" + "".join(f"  {c:>9}" for c in cols)]
    for name, vals in per_class.items():
        cells = []
        for c in cols:
            v = vals.get(c)
            cells.append(f"  {'-':>9}" if v is None or (isinstance(v, float) and math.isnan(v))
                         else f"  {v:>9d}" if isinstance(v, int) else f"  {v:>9.4f}")
        lines.append("  " + f"{name:<{w}}" + "".join(cells))
    return "\n".join(lines)


# -- detection -------------------------------------------------------------------------------

def _load_json(path: str, what: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} file not found: {p}")
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} file {p} is not valid json ({e})") from None


def _detection(options: dict[str, str]) -> tuple[dict[str, Any], Any]:
    from zoo.metrics import plots
    from zoo.metrics.detection import (
        IOU_TYPES,
        VOC_PROTOCOLS,
        check_coco_gt,
        check_coco_results,
        headline_ap_key,
        parse_protocols,
        score_coco_files,
    )

    iou_type = options.get("iou_type", "bbox")
    if iou_type not in IOU_TYPES:
        raise UserError(f"unknown iou_type '{iou_type}'; valid: {choices(IOU_TYPES)}")
    protocols = parse_protocols(options.get("protocol"))
    if iou_type != "bbox" and any(p in VOC_PROTOCOLS for p in protocols):
        raise UserError("the VOC protocols score boxes only; use iou_type=bbox or protocol=coco")
    backend = options.get("backend", "faster_coco_eval")
    if backend not in ("faster_coco_eval", "pycocotools"):
        raise UserError(f"unknown backend '{backend}'; valid: faster_coco_eval, pycocotools")
    gt = _load_json(options["gt"], "ground truth")
    check_coco_gt(gt, options["gt"], iou_type)
    res = _load_json(options["predictions"], "predictions")
    check_coco_results(res, options["predictions"], iou_type, gt)
    sigmas = _sigmas(options.get("sigmas"), gt, iou_type) if "coco" in protocols else None
    metrics, per_class, curves = score_coco_files(gt, res, iou_type, protocols,
                                                  keypoint_sigmas=sigmas, backend=backend)
    metrics["per_class"] = per_class

    def plotter(directory: Path) -> list[Path]:
        written = []
        if curves:
            title = "Precision-recall at IoU 0.50" + ("" if "coco" in protocols else " (VOC)")
            written.append(plots.plot_pr_curves(curves, directory / "pr_curves.png", title))
        key = headline_ap_key(protocols)
        vals = {n: v[key] for n, v in per_class.items() if v.get(key) is not None}
        if vals:
            written.append(plots.plot_per_class_bars(vals, f"{key} per class", directory / "ap_per_class.png"))
        return written

    return metrics, plotter


def _sigmas(value: str | None, gt: dict, iou_type: str) -> list[float] | None:
    if iou_type != "keypoints":
        return None
    if value:
        try:
            return [float(v) for v in value.split(",")]
        except ValueError:
            raise UserError(f"sigmas must be comma-separated numbers, got '{value}'") from None
    n = next((len(a["keypoints"]) // 3 for a in gt["annotations"]), 17)
    if n != 17:
        raise UserError(f"the ground truth has {n} keypoints per object; pass sigmas=s1,...,s{n} "
                        f"(the default OKS sigmas are COCO's 17 person keypoints)")
    return None


# -- segmentation ----------------------------------------------------------------------------

def _png_index(folder: str, what: str) -> dict[str, Path]:
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{what} folder not found: {root} (expected a folder of label PNGs)")
    files = {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.png"))}
    if not files:
        raise UserError(f"{what} folder {root} holds no .png files (expected single-channel label PNGs)")
    return files


def _read_labels(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise UserError(f"{path} is a {im.mode} image; label PNGs must be single-channel "
                                f"(grey or palette) class indices")
            return np.asarray(im, dtype=np.int64)
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"cannot read {path} as a PNG ({e})") from None


def _segmentation(options: dict[str, str]) -> tuple[dict[str, Any], Any]:
    from zoo.errors import DataError
    from zoo.metrics.segmentation import SegmentationEvaluator

    try:
        num_classes = int(options["num_classes"])
        ignore_index = int(options.get("ignore_index", 255))
    except KeyError:
        raise UserError("task=segmentation needs num_classes=N") from None
    except ValueError:
        raise UserError("num_classes and ignore_index must be integers") from None
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    names = None
    if options.get("class_names"):
        names = [n.strip() for n in options["class_names"].split(",")]
        if len(names) != num_classes:
            raise UserError(f"class_names lists {len(names)} names for num_classes={num_classes}")
    gts = _png_index(options["gt"], "ground-truth")
    preds = _png_index(options["predictions"], "predictions")
    missing = sorted(set(gts) - set(preds))
    if missing:
        raise UserError(f"{len(missing)} ground-truth mask(s) have no prediction with the same name "
                        f"in {options['predictions']}, e.g. {missing[0]}.png")
    extra = sorted(set(preds) - set(gts))
    if extra:
        raise UserError(f"{len(extra)} prediction(s) have no ground-truth mask with the same name "
                        f"in {options['gt']}, e.g. {extra[0]}.png")
    ev = SegmentationEvaluator(num_classes, names, ignore_index)
    for key in sorted(gts):
        g, p = _read_labels(gts[key]), _read_labels(preds[key])
        if g.shape != p.shape:
            raise UserError(f"{preds[key]} is {p.shape[1]}x{p.shape[0]} but its ground truth "
                            f"{gts[key]} is {g.shape[1]}x{g.shape[0]}")
        try:
            ev.update(torch.from_numpy(p)[None], (None, torch.from_numpy(g)[None]))
        except DataError as e:
            raise UserError(f"{gts[key]}: {e}") from None
    metrics = ev.compute()
    metrics["num_images"] = len(gts)
    return metrics, ev.save_plots
