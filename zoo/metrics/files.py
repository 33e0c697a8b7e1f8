"""``evaluate.py`` on prediction files: any detector's or segmenter's output, no model.

Detection (COCO formats)::

    python evaluate.py task=detection gt=instances.json predictions=results.json \\
        [iou_type=bbox|segm|keypoints] [protocol=coco|voc07|voc12|voc07_devkit|all] [sigmas=0.05,...] \\
        [backend=faster_coco_eval|pycocotools] [output=PATH] [plots=true|false]

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

Scoring COCO files is what many people run most, so that path is light: it imports
neither torch nor the task registry (which imports every task and torch) nor
matplotlib until the numbers are printed and written; json is parsed by orjson when
it is installed (several times faster than the standard library; the standard
library reads what orjson refuses, NaN literals, and words the errors).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import UserError, choices

# The keys of each task's file mode (the task's own ``file_options`` plus ``task``).
DETECTION_KEYS = {"task", "gt", "predictions", "iou_type", "protocol", "output", "sigmas", "backend",
                  "plots"}
SEGMENTATION_KEYS = {"task", "gt", "predictions", "num_classes", "ignore_index", "class_names", "output"}
# Tasks scored here without importing the task registry: {task: (keys, required keys)}.
# The registry's Task.file_options say the same (a test holds them equal).
LIGHT_FILE_TASKS = {"detection": (DETECTION_KEYS, ("gt", "predictions"))}


def evaluate_files(options: dict[str, str]) -> dict[str, Any]:
    """Score prediction files against ground truth; print, write metrics.json and plots.

    ``options["task"]`` names a task of ``zoo.tasks`` that scores files (its
    ``file_options`` are the valid keys, its ``score_files`` reads and scores them)."""
    name = options.get("task")
    if name in LIGHT_FILE_TASKS:
        keys, required = LIGHT_FILE_TASKS[name]
        _check_keys(name, options, keys)
        for key in required:
            if not options.get(key):
                raise UserError(f"task={name} needs {key}=PATH")
        metrics, plotter = _detection(options)
    else:
        from zoo.tasks import all_tasks, get_task

        scorers = [t.name for t in all_tasks() if t.file_options]
        if name not in scorers:
            raise UserError(f"unknown task '{name}'; valid tasks: {choices(scorers)}")
        task = get_task(name)
        _check_keys(name, options, {"task", *task.file_options})
        for key, opt in task.file_options.items():
            if opt.required and not options.get(key):
                raise UserError(f"task={name} needs {key}=PATH" if key in ("gt", "predictions")
                                else f"task={name} needs {opt.usage(key)}")
        metrics, plotter = task.score_files(options)
    out = _output_path(options)
    result = {"task": name, "gt": str(Path(options["gt"])), "predictions": str(Path(options["predictions"])),
              **metrics}
    write_metrics(out, result)
    # The numbers first: drawing (matplotlib) comes after they are printed and written.
    print(format_numbers(metrics, f"{name}: {options['predictions']}"))
    print(_per_class_table(metrics.get("per_class", {})))
    if metrics.get("absent_classes"):
        print(f"absent everywhere (left out of the means): {', '.join(metrics['absent_classes'])}")
    print(f"wrote {out}", end="", flush=True)
    plots = plotter(out.parent)
    print("".join(f", {p.name}" for p in plots))
    return result


def _check_keys(name: str, options: dict[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UserError(f"unknown option '{unknown[0]}' for task={name}; valid options: {choices(allowed)}")


# zoo.engine.utils' write_json and format_table, without importing torch (that module
# does, for its tensor cases; file scoring has no tensors).
def _plain(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, np.ndarray):
        return _plain(o.tolist())
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None  # strict JSON
    if isinstance(o, Path):
        return str(o)
    if o is None or isinstance(o, (str, int, float, bool)):
        return o
    if hasattr(o, "tolist"):  # a tensor from a task that scored files with torch
        return _plain(o.tolist())
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_metrics(path: str | Path, obj: Any) -> None:
    """JSON with NaN written as null (strict JSON), atomically (as ``write_json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_plain(obj), indent=2) + "\n")
    os.replace(tmp, path)


def format_numbers(metrics: dict[str, Any], title: str | None = None) -> str:
    """The headline numbers, one a line (as ``format_table``)."""
    nums = {}
    for k, v in metrics.items():
        if isinstance(v, (bool, np.bool_)):
            continue
        if (isinstance(v, (int, float, np.integer, np.floating))
                or (hasattr(v, "numel") and v.numel() == 1)):  # a one-element tensor
            nums[k] = float(v)
    if not nums:
        return ""
    w = max(len(k) for k in nums)
    lines = [title] if title else []
    lines += [f"  {k:<{w}}  {v:.6g}" for k, v in nums.items()]
    return "\n".join(lines)


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
    data = p.read_bytes()
    try:
        import orjson
    except ImportError:
        orjson = None
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # NaN/Infinity literals or not json: the standard library reads or words it
    try:
        return json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} file {p} is not valid json ({e})") from None


def _detection(options: dict[str, str]) -> tuple[dict[str, Any], Any]:
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
    draw = options.get("plots", "true")
    if draw not in ("true", "false"):
        raise UserError(f"plots must be true or false, got '{draw}'")
    gt = _load_json(options["gt"], "ground truth")
    res = _load_json(options["predictions"], "predictions")
    _check_id_range(gt, options["gt"], "ground truth")
    _check_id_range(res, options["predictions"], "predictions")
    check_coco_gt(gt, options["gt"], iou_type)
    check_coco_results(res, options["predictions"], iou_type, gt)
    sigmas = _sigmas(options.get("sigmas"), gt, iou_type) if "coco" in protocols else None
    metrics, per_class, curves = score_coco_files(gt, res, iou_type, protocols,
                                                  keypoint_sigmas=sigmas, backend=backend)
    metrics["per_class"] = per_class

    def plotter(directory: Path) -> list[Path]:
        if draw == "false":
            return []
        from zoo.metrics import plots

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


def _check_id_range(doc: Any, path: str, what: str) -> None:
    """Ids past 64 bits are a mistake: the COCO evaluation keeps ids in 64 bits (and orjson
    reads such integers as floats, where two ids can become one)."""
    if isinstance(doc, dict):
        rows = [r for key in ("images", "annotations", "categories") for r in doc.get(key) or []]
    else:
        rows = doc if isinstance(doc, list) else []
    for r in rows:
        if not isinstance(r, dict):
            continue
        for k in ("id", "image_id", "category_id"):
            v = r.get(k)
            if type(v) in (int, float) and abs(v) >= 2**63:
                raise UserError(f"{what} {path}: {k} {v if type(v) is int else f'{v:.0f}'} does not "
                                f"fit in 64 bits; COCO ids "
                                f"are 64-bit integers")


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
    import torch

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
