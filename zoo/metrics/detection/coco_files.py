"""COCO json files as a person wrote them: checked entry by entry, then scored.

``check_coco_gt`` and ``check_coco_results`` stop at the first entry the evaluation
cannot take and raise one ``UserError`` naming the file, the entry's index and the
field: a missing key, a box that is not four finite numbers or has a negative width
or height, a score that is a string or NaN, keypoints that are not x, y, v triples,
an id the other file does not define. A number is an int or a float (not a bool, not
a string that looks like one): json's ``NaN`` and ``Infinity`` are read by Python's
json module, so finiteness is checked too. The common case (boxes) is checked column by
column with NumPy first; only a file that fails that check is walked entry by entry, to
name the first bad entry. Importing this module imports neither torch nor matplotlib.

``score_coco_files`` runs the chosen protocols (``coco``, ``voc07``, ``voc12``,
``voc07_devkit``) on a checked pair and returns the flat metrics, the per-class table
and the PR curves. VOC protocols score boxes and honour a ``difficult`` flag on
annotations when the file has one; crowd annotations are ignored like difficult ones.
Ground truth without ``iscrowd`` counts as not crowd; without ``area``, the box area
is used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.errors import UserError
from zoo.metrics.detection.coco import coco_evaluate
from zoo.metrics.detection.voc import VOC_PROTOCOLS, voc_scores

_RESULT_FIELD = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _describe(v: Any) -> str:
    text = repr(v) if not isinstance(v, float) else str(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _box_problem(box: Any) -> str | None:
    """Why ``box`` is not a COCO [x, y, w, h] (None when it is one)."""
    if not isinstance(box, list) or len(box) != 4:
        return f"is {_describe(box)}, not a list [x, y, w, h] of four numbers"
    for name, v in zip(("x", "y", "w", "h"), box):
        if not _is_number(v):
            return f"has {name} = {_describe(v)}, not a finite number"
    if box[2] < 0 or box[3] < 0:
        return f"has a negative {'width' if box[2] < 0 else 'height'} ({_describe(box)})"
    return None


def _keypoints_problem(kp: Any) -> str | None:
    if not isinstance(kp, list) or len(kp) % 3:
        return "is not a flat list of x, y, v triples"
    bad = next((j for j, v in enumerate(kp) if not _is_number(v)), None)
    if bad is not None:
        return f"has value #{bad} = {_describe(kp[bad])}, not a finite number"
    return None


# -- the column-wise checks: True when every entry is right; False sends the file to the
# entry-by-entry check, which names the first entry that is not (the same messages).
_NUMBER_TYPES = {int, float}


def _finite_numbers(values: list) -> np.ndarray | None:
    """``values`` as float64 when each is an int or a float (not a bool or a string that
    looks like one) and finite; else None."""
    if not {type(v) for v in values} <= _NUMBER_TYPES:
        return None
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (OverflowError, ValueError):
        return None
    return arr if np.isfinite(arr).all() else None


def _boxes_valid(boxes: list) -> bool:
    """Every box a list of four finite numbers with a width and height >= 0."""
    if not boxes:
        return True
    if {type(b) for b in boxes} != {list} or {len(b) for b in boxes} != {4}:
        return False
    flat = _finite_numbers(list(itertools.chain.from_iterable(boxes)))
    return flat is not None and bool((flat.reshape(-1, 4)[:, 2:] >= 0).all())


def _dicts_with(rows: list, keys: Sequence[str]) -> bool:
    return all(type(r) is dict for r in rows) and all(k in r for k in keys for r in rows)


def _gt_valid(gt: dict, need: Sequence[str], iou_type: str) -> bool:
    images, cats, anns = gt["images"], gt["categories"], gt["annotations"]
    if not (_dicts_with(images, ("id",)) and _dicts_with(cats, ("id",)) and _dicts_with(anns, need)):
        return False
    if iou_type == "segm" and not _dicts_with(images, ("height", "width")):
        return False
    try:
        image_ids = {im["id"] for im in images}
        cat_ids = {c["id"] for c in cats}
        if not ({a["image_id"] for a in anns} <= image_ids and {a["category_id"] for a in anns} <= cat_ids):
            return False
        for key in ("iscrowd", "difficult"):  # True/False compare equal to 1/0, as below
            if not {a[key] for a in anns if key in a} <= {0, 1}:
                return False
    except TypeError:  # an unhashable id or flag
        return False
    areas = [a["area"] for a in anns if "area" in a]
    if areas:
        arr = _finite_numbers(areas)
        if arr is None or not bool((arr >= 0).all()):
            return False
    return _boxes_valid([a["bbox"] for a in anns if "bbox" in a])


def _bbox_results_valid(res: list, image_ids: set, cat_ids: set) -> bool:
    if not _dicts_with(res, ("image_id", "category_id", "score", "bbox")):
        return False
    try:
        if not ({r["image_id"] for r in res} <= image_ids
                and {r["category_id"] for r in res} <= cat_ids):
            return False
    except TypeError:  # an unhashable id
        return False
    return (_finite_numbers([r["score"] for r in res]) is not None
            and _boxes_valid([r["bbox"] for r in res]))


def check_coco_gt(gt: Any, path: str, iou_type: str) -> None:
    """A COCO instances file the evaluation can take, else one ``UserError``."""
    if not isinstance(gt, dict) or not all(isinstance(gt.get(k), list)
                                           for k in ("images", "annotations", "categories")):
        raise UserError(f"ground truth {path} is not a COCO instances file: expected an object with "
                        f"'images', 'annotations' and 'categories' lists")
    need = {"bbox": ("image_id", "category_id", "bbox"),
            "segm": ("image_id", "category_id", "segmentation"),
            "keypoints": ("image_id", "category_id", "keypoints", "bbox")}[iou_type]
    if iou_type != "keypoints" and _gt_valid(gt, need, iou_type):
        return
    for what, rows, keys in (("image", gt["images"], ("id",)), ("category", gt["categories"], ("id",)),
                             ("annotation", gt["annotations"], need)):
        for i, row in enumerate(rows):
            missing = [k for k in keys if not isinstance(row, dict) or k not in row]
            if missing:
                raise UserError(f"ground truth {path}: {what} #{i} has no '{missing[0]}' field "
                                f"(iou_type={iou_type} needs {', '.join(keys)})")
    if iou_type == "segm" and any(("height" not in im or "width" not in im) for im in gt["images"]):
        raise UserError(f"ground truth {path}: iou_type=segm needs 'height' and 'width' on every image")
    image_ids = {_hashable(im["id"]) for im in gt["images"]}
    cat_ids = {_hashable(c["id"]) for c in gt["categories"]}
    for i, a in enumerate(gt["annotations"]):
        where = f"ground truth {path}: annotation #{i}"
        if _hashable(a["image_id"]) not in image_ids:
            raise UserError(f"{where} refers to image id {_describe(a['image_id'])}, "
                            f"which is not in 'images'")
        if _hashable(a["category_id"]) not in cat_ids:
            raise UserError(f"{where} has category id {_describe(a['category_id'])}, "
                            f"which is not in 'categories'")
        if "bbox" in a:
            problem = _box_problem(a["bbox"])
            if problem:
                raise UserError(f"{where}: field 'bbox' {problem}")
        for key in ("area",):
            if key in a and not (_is_number(a[key]) and a[key] >= 0):
                raise UserError(f"{where}: field '{key}' is {_describe(a[key])}, "
                                f"not a finite number >= 0")
        for key in ("iscrowd", "difficult"):
            if key in a and a[key] not in (0, 1):  # True/False compare equal to 1/0
                raise UserError(f"{where}: field '{key}' is {_describe(a[key])}, not 0 or 1")
        if iou_type == "keypoints":
            problem = _keypoints_problem(a["keypoints"])
            if problem:
                raise UserError(f"{where}: field 'keypoints' {problem}")


def check_coco_results(res: Any, path: str, iou_type: str, gt: dict) -> None:
    """A COCO results list the evaluation can take against ``gt``, else one ``UserError``."""
    if isinstance(res, dict) and isinstance(res.get("annotations"), list):
        raise UserError(f"predictions {path} look like a ground-truth file; expected COCO results: "
                        f"a list of {{image_id, category_id, score, ...}}")
    if not isinstance(res, list):
        raise UserError(f"predictions {path} must be a json list of COCO results "
                        f"{{image_id, category_id, score, ...}}")
    field = _RESULT_FIELD[iou_type]
    image_ids = {_hashable(im["id"]) for im in gt["images"]}
    cat_ids = {_hashable(c["id"]) for c in gt["categories"]}
    if iou_type == "bbox" and _bbox_results_valid(res, image_ids, cat_ids):
        return
    for i, r in enumerate(res):
        where = f"predictions {path}: result #{i}"
        missing = [k for k in ("image_id", "category_id", "score", field)
                   if not isinstance(r, dict) or k not in r]
        if missing:
            raise UserError(f"{where} has no '{missing[0]}' field "
                            f"(iou_type={iou_type} needs image_id, category_id, score, {field})")
        if not _is_number(r["score"]):
            raise UserError(f"{where}: field 'score' is {_describe(r['score'])}, not a finite number")
        if field == "bbox" or "bbox" in r:
            problem = _box_problem(r["bbox"])
            if problem:
                raise UserError(f"{where}: field 'bbox' {problem}")
        if field == "segmentation" and not (isinstance(r["segmentation"], dict)
                                            and "counts" in r["segmentation"]):
            raise UserError(f"{where}: field 'segmentation' is not a run-length encoding "
                            f"{{size, counts}}")
        if field == "keypoints":
            problem = _keypoints_problem(r["keypoints"])
            if problem:
                raise UserError(f"{where}: field 'keypoints' {problem}")
        if _hashable(r["image_id"]) not in image_ids:
            raise UserError(f"{where}: field 'image_id' is {_describe(r['image_id'])}, an image id not "
                            f"in the ground truth ({len(res)} results; ids must match 'images')")
        if _hashable(r["category_id"]) not in cat_ids:
            raise UserError(f"{where}: field 'category_id' is {_describe(r['category_id'])}, a category id "
                            f"the ground truth does not define (it has {sorted(cat_ids, key=str)[:10]}); "
                            f"map labels back to the dataset's category ids")


def _hashable(v: Any) -> Any:
    """Ids compared as json values: a list or dict id (never valid) must not crash the set test."""
    return v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)


def headline_ap_key(protocols: Sequence[str]) -> str:
    """The per-class AP key that stands for ``protocols`` in plots: COCO's, else the first VOC one."""
    if "coco" in protocols:
        return "ap"
    for proto in ("voc12", "voc07", "voc07_devkit"):
        if proto in protocols:
            return f"{proto}_ap"
    return "ap"


def score_coco_files(gt: dict, res: list[dict], iou_type: str, protocols: Sequence[str], *,
                     keypoint_sigmas: Sequence[float] | None = None,
                     backend: str = "faster_coco_eval",
                     ) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, tuple]]:
    """(flat metrics, per_class {name: {...}}, PR curves {name: (recall, precision)}) of a
    checked ground-truth dict and results list. ``gt`` is completed in place (``id``,
    ``iscrowd``, ``area``); ``res`` is left as it is."""
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    names = {c["id"]: str(c.get("name", c["id"])) for c in cats}
    # Fields both libraries require; ids renumbered since an annotation id of 0 means "unmatched".
    for i, a in enumerate(gt["annotations"]):
        a["id"] = i + 1
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = a["bbox"][2] * a["bbox"][3] if "bbox" in a else 0.0
    metrics: dict[str, Any] = {}
    per_class: dict[str, dict[str, Any]] = {names[c["id"]]: {} for c in cats}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if "coco" in protocols:
        # The COCO run adds fields to the dicts in place (never changes boxes, which VOC reads).
        ev = coco_evaluate(gt, [dict(r) for r in res], iou_type, keypoint_sigmas=keypoint_sigmas,
                           backend=backend)
        metrics.update(ev.summary())
        for cat, vals in ev.per_category().items():
            per_class[names[cat]].update(vals)
            curve = ev.pr_curve(cat)
            if curve is not None:
                curves[names[cat]] = curve
    if any(p in VOC_PROTOCOLS for p in protocols):
        img_index = {im["id"]: k for k, im in enumerate(gt["images"])}

        def xyxy(b: list) -> list:
            return [b[0], b[1], b[0] + b[2], b[1] + b[3]]

        anns = gt["annotations"]
        voc = voc_scores(
            protocols, [c["id"] for c in cats],
            det_image=np.array([img_index[r["image_id"]] for r in res], np.int64),
            det_boxes=np.array([xyxy(r["bbox"]) for r in res], np.float64).reshape(-1, 4),
            det_scores=np.array([r["score"] for r in res], np.float64),
            det_labels=np.array([r["category_id"] for r in res], np.int64),
            gt_image=np.array([img_index[a["image_id"]] for a in anns], np.int64),
            gt_boxes=np.array([xyxy(a["bbox"]) for a in anns], np.float64).reshape(-1, 4),
            gt_labels=np.array([a["category_id"] for a in anns], np.int64),
            gt_ignore=np.array([bool(a.get("difficult", 0)) or bool(a.get("iscrowd", 0)) for a in anns],
                               bool))
        for proto, m in voc.maps.items():
            metrics[f"{proto}_map"] = m
            for cat, ap in voc.aps[proto].items():
                per_class[names[cat]][f"{proto}_ap"] = ap
        for cat, n in voc.num_gt.items():
            per_class[names[cat]]["num_gt"] = n
        if "coco" not in protocols:
            curves = {names[cat]: curve for cat, curve in voc.curves.items()}
    metrics["num_images"] = len(gt["images"])
    metrics["num_predictions"] = len(res)
    return metrics, per_class, curves
