"""COCO detection metrics (boxes, masks, keypoints), COCO json checks and result files.

COCO protocol
    Exactly the official COCO evaluation (``pycocotools.cocoeval.COCOeval``): IoU
    thresholds .50:.05:.95, 101-point interpolated precision, area ranges small
    (< 32²), medium, large (> 96²) judged on the ground truth's ``area``, at most
    1/10/100 detections per image and category (20 for keypoints), crowd regions
    that absorb any number of detections (IoU against a crowd region divides by the
    detection's area), AP per category then averaged over the categories that have
    ground truth. A summary that nothing defines (no ground truth in that area range)
    is ``-1``, as in pycocotools.

    The computation runs in the ``faster-coco-eval`` package (C++), which gives the
    same numbers as pycocotools (the tests compare the two to 1e-9 on randomised sets
    with crowds, empty images, more than 100 detections per image and categories
    never predicted) several times faster. ``backend="pycocotools"`` runs the
    reference instead. Result files are indexed here rather than by ``loadRes``
    (which builds a polygon per box and dominates the run time on large sets), with
    the same fields ``loadRes`` would set. Ground-truth annotation ids are
    renumbered 1..N because both libraries use an id of 0 as "unmatched".

    ``coco_evaluate`` and ``CocoEvaluation`` are independent of the kind of object
    scored: box, mask (``segm``) and keypoint evaluations share them.

COCO result files
    ``write_coco_results(path, predictions_by_image_id, label_to_cat_id)`` writes the
    official results format (``[{"image_id", "category_id", "bbox": [x, y, w, h],
    "score"[, "segmentation"][, "keypoints"]}]``) with labels mapped back to the
    dataset's original category ids, e.g. ``{1: 1, 2: 2, ..., 80: 90}`` for COCO.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are handled: scoring json files needs none
    import torch

IOU_TYPES = ("bbox", "segm", "keypoints")

# Per-keypoint OKS falloffs of COCO's 17 person keypoints (pycocotools' defaults).
COCO_KEYPOINT_SIGMAS = (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62,
                        1.07, 1.07, 0.87, 0.87, 0.89, 0.89)
COCO_KEYPOINT_SIGMAS = tuple(s / 10.0 for s in COCO_KEYPOINT_SIGMAS)

# Flat output keys: (name, ap?, iou index or None, area label, max-dets index).
_DET_SUMMARY = (
    ("map", True, None, "all", -1), ("map_50", True, 0, "all", -1),
    ("map_75", True, 5, "all", -1), ("map_small", True, None, "small", -1),
    ("map_medium", True, None, "medium", -1), ("map_large", True, None, "large", -1),
    ("mar_1", False, None, "all", 0), ("mar_10", False, None, "all", 1),
    ("mar_100", False, None, "all", 2), ("mar_small", False, None, "small", -1),
    ("mar_medium", False, None, "medium", -1), ("mar_large", False, None, "large", -1),
)
_KPT_SUMMARY = (
    ("map", True, None, "all", -1), ("map_50", True, 0, "all", -1),
    ("map_75", True, 5, "all", -1), ("map_medium", True, None, "medium", -1),
    ("map_large", True, None, "large", -1), ("mar", False, None, "all", -1),
    ("mar_50", False, 0, "all", -1), ("mar_75", False, 5, "all", -1),
    ("mar_medium", False, None, "medium", -1), ("mar_large", False, None, "large", -1),
)


def _silent(*args: Any, **kwargs: Any) -> None:
    pass



@dataclass
class CocoEvaluation:
    """The accumulated COCO arrays (pycocotools' ``eval``) and the parameters indexing them."""

    iou_type: str
    precision: np.ndarray        # (T, R, K, A, M), -1 where a category has no ground truth
    recall: np.ndarray           # (T, K, A, M)
    cat_ids: list[int]           # K
    area_labels: list[str]       # A
    max_dets: list[int]          # M
    iou_thresholds: np.ndarray   # T
    recall_thresholds: np.ndarray  # R

    def summary(self) -> dict[str, float]:
        """pycocotools' ``summarize()`` numbers under this project's key names."""
        table = _KPT_SUMMARY if self.iou_type == "keypoints" else _DET_SUMMARY
        out = {}
        for name, is_ap, t, area, m in table:
            a = self.area_labels.index(area)
            s = self.precision[..., a, m] if is_ap else self.recall[..., a, m]
            if t is not None:
                s = s[t]
            s = s[s > -1]
            out[name] = float(np.mean(s)) if s.size else -1.0
        return out

    def per_category(self) -> dict[int, dict[str, float | None]]:
        """AP over .50:.95, AP at .50 and .75, recall, per category id (None without ground truth)."""
        out = {}
        for k, cat in enumerate(self.cat_ids):
            p = self.precision[:, :, k, 0, -1]  # (T, R) all areas, most detections

            def mean(x: np.ndarray) -> float | None:
                x = x[x > -1]
                return float(np.mean(x)) if x.size else None

            out[cat] = {"ap": mean(p), "ap50": mean(p[0]), "ap75": mean(p[5]),
                        "ar": mean(self.recall[:, k, 0, -1])}
        return out

    def pr_curve(self, cat_id: int, iou_index: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
        """(recall thresholds, interpolated precision) at IoU .50 by default; None without gt."""
        p = self.precision[iou_index, :, self.cat_ids.index(cat_id), 0, -1]
        if (p < 0).all():
            return None
        return self.recall_thresholds, np.clip(p, 0, None)


def index_results(gt: Any, results: list[dict], iou_type: str, backend: str = "faster_coco_eval") -> Any:
    """The results as a COCO object of ``backend``, with the fields ``loadRes`` sets.

    ``results`` are fresh dicts (they are completed in place). The branch on the first
    result mirrors ``loadRes``: results that carry a box get the box area even when
    masks are scored, those with only a mask get the mask area.
    """
    if backend == "pycocotools":
        import contextlib
        import io

        if not results:  # loadRes cannot take an empty list
            from pycocotools.coco import COCO as PyCOCO

            res = PyCOCO()
            res.dataset = {"images": list(gt.dataset["images"]), "annotations": [],
                           "categories": gt.dataset["categories"]}
            with contextlib.redirect_stdout(io.StringIO()):
                res.createIndex()
            return res
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(results)
    from faster_coco_eval import COCO
    from faster_coco_eval.core import mask as mask_utils

    if results and "bbox" in results[0] and len(results[0]["bbox"]) > 0:
        for r in results:
            bb = r["bbox"]
            r["area"] = bb[2] * bb[3]
            r["iscrowd"] = 0
    elif results and "segmentation" in results[0]:
        rles = [r["segmentation"] for r in results]
        areas = mask_utils.area(rles)
        boxes = mask_utils.toBbox(rles)
        for r, a, b in zip(results, areas, boxes):
            r["area"] = a
            r.setdefault("bbox", b)
            r["iscrowd"] = 0
    elif results and "keypoints" in results[0]:
        for r in results:
            k = np.asarray(r["keypoints"], np.float64)
            x0, x1, y0, y1 = k[0::3].min(), k[0::3].max(), k[1::3].min(), k[1::3].max()
            r["area"] = (x1 - x0) * (y1 - y0)
            r["bbox"] = [x0, y0, x1 - x0, y1 - y0]
    for i, r in enumerate(results):
        r["id"] = i + 1
    res = COCO(print_function=_silent)
    res.dataset = {"images": gt.dataset["images"], "annotations": results,
                   "categories": gt.dataset["categories"]}
    res.createIndex()
    return res


def coco_evaluate(gt_dataset: dict, results: list[dict], iou_type: str = "bbox", *,
                  keypoint_sigmas: Sequence[float] | None = None,
                  backend: str = "faster_coco_eval") -> CocoEvaluation:
    """Run the COCO evaluation of ``results`` (COCO results format) against ``gt_dataset``.

    Both are plain dicts/lists as in the json files and are completed in place
    (``ignore``, ``id``, ``area``...); pass copies to keep them.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    sigmas = None if keypoint_sigmas is None else np.asarray(keypoint_sigmas, np.float64)
    if backend == "pycocotools":
        import contextlib
        import io

        from pycocotools.coco import COCO as PyCOCO
        from pycocotools.cocoeval import COCOeval

        gt = PyCOCO()
        gt.dataset = gt_dataset
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            dt = index_results(gt, results, iou_type, backend)
            ev = COCOeval(gt, dt, iou_type)
            if sigmas is not None:
                ev.params.kpt_oks_sigmas = sigmas
            ev.evaluate()
            ev.accumulate()
    elif backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        gt = COCO(print_function=_silent)
        gt.dataset = gt_dataset
        gt.createIndex()
        dt = index_results(gt, results, iou_type, backend)
        ev = COCOeval_faster(gt, dt, iou_type, print_function=_silent,
                             kpt_oks_sigmas=None if sigmas is None else list(sigmas))
        # faster-coco-eval keeps only categories with ground truth for keypoints;
        # pycocotools keeps them all (with AP -1). Same numbers, same array layout.
        ev.params.catIds = sorted(gt.getCatIds())
        ev.evaluate()
        ev.accumulate()
    else:
        raise ValueError(f"backend must be 'faster_coco_eval' or 'pycocotools', got {backend!r}")
    p = ev.params
    return CocoEvaluation(
        iou_type=iou_type, precision=np.asarray(ev.eval["precision"], np.float64),
        recall=np.asarray(ev.eval["recall"], np.float64), cat_ids=list(p.catIds),
        area_labels=list(p.areaRngLbl), max_dets=list(p.maxDets),
        iou_thresholds=np.asarray(p.iouThrs), recall_thresholds=np.asarray(p.recThrs))


def _rle_encode(masks: np.ndarray) -> list[dict]:
    """(N, H, W) uint8 -> list of COCO compressed RLEs (counts as str, json-ready)."""
    from faster_coco_eval.core import mask as mask_utils

    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0)))  # wants (H, W, N)
    for r in rles:
        if isinstance(r["counts"], bytes):
            r["counts"] = r["counts"].decode("ascii")
    return rles


def _binary_masks(m: torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, 1, H, W), float (probabilities, cut at 0.5) or integer -> (N, H, W) uint8."""
    import torch

    if m.ndim == 4:
        m = m[:, 0]
    if m.is_floating_point():
        return (m > 0.5).to(torch.uint8)
    return (m != 0).to(torch.uint8)


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)



def _numpy(v: Any, dtype: Any) -> np.ndarray:
    import torch

    return (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)).astype(dtype)



def write_coco_results(path: str | os.PathLike,
                       predictions_by_image_id: Mapping[int, Mapping[str, Any]],
                       label_to_cat_id: Mapping[int, int] | Sequence[int] | None = None) -> int:
    """Write detections in COCO's results format; returns the number of detections written.

    ``predictions_by_image_id``: {image_id: {"boxes" (N, 4) xyxy, "scores", "labels"
    [, "masks" (N, H, W) or (N, 1, H, W)][, "keypoints" (N, P, 3)]}}, tensors or arrays.
    ``label_to_cat_id`` maps a label (1..K) to the dataset's category id, as a dict or
    a sequence indexed by ``label - 1``; None keeps the labels. Labels it does not map
    (0, the background) are skipped. Every result carries its box, so one file serves
    ``bbox`` and ``segm`` scoring (pycocotools then sizes unmatched mask results by
    their box area for the area ranges).
    """
    if label_to_cat_id is None:
        mapping: dict[int, int] | None = None
    elif isinstance(label_to_cat_id, Mapping):
        mapping = {int(k): int(v) for k, v in label_to_cat_id.items()}
    else:
        mapping = {i + 1: int(v) for i, v in enumerate(label_to_cat_id)}
    out = []
    for image_id, p in predictions_by_image_id.items():
        labels = _numpy(p["labels"], np.int64).reshape(-1)
        boxes = _xywh(_numpy(p["boxes"], np.float64)).tolist()
        scores = _numpy(p["scores"], np.float64).reshape(-1).tolist()
        rles = None
        if "masks" in p:
            import torch

            m = p["masks"] if isinstance(p["masks"], torch.Tensor) else torch.as_tensor(p["masks"])
            rles = _rle_encode(_binary_masks(m).cpu().numpy())
        kpts = None
        if "keypoints" in p:
            k = _numpy(p["keypoints"], np.float64)
            kpts = k.reshape(len(labels), int(np.prod(k.shape[1:]))).tolist()
        for j, label in enumerate(labels.tolist()):
            if mapping is not None and label not in mapping:
                continue
            rec: dict[str, Any] = {"image_id": int(image_id),
                                   "category_id": mapping[label] if mapping is not None else label,
                                   "bbox": [round(v, 3) for v in boxes[j]], "score": round(scores[j], 5)}
            if rles is not None:
                rec["segmentation"] = rles[j]
            if kpts is not None:
                rec["keypoints"] = [round(v, 3) for v in kpts[j]]
            out.append(rec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)
    return len(out)
