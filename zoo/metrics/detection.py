"""Detection metrics: COCO AP/AR (boxes, masks, keypoints) and Pascal VOC AP.

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

Pascal VOC protocol (``voc07_map``, ``voc12_map``)
    The devkit's matching at IoU > 0.5 (strictly greater): detections of a class are
    taken in descending score over the whole split; each is assigned to the ground
    truth of its image with the highest IoU, whether or not that one is already
    taken; a match on a ``difficult`` (or crowd) object counts as neither true nor
    false positive; a second match on the same object is a false positive. No cap on
    detections per image. AP is VOC2007's 11-point interpolation (recall levels
    exactly 0, 0.1, ..., 1; ports that step with ``np.arange(0, 1.1, 0.1)`` miss a
    recall of exactly 0.3, 0.6 or 0.7) or VOC2010+'s area under the monotone
    precision envelope. Boxes are continuous xyxy pixels, so IoU has no "+1" on
    widths (the devkit's integer-pixel convention); equal scores keep arrival order
    (stable sort) where the devkit's quicksort order is unspecified.

Tensor input
    ``DetectionEvaluator.update`` takes torchvision-style predictions and targets
    (boxes xyxy in pixels, labels 1..K with 0 the background). Each batch is copied
    to the CPU once and kept as arrays (masks as COCO run-length encodings, to bound
    memory); the conversion to COCO records happens once, in ``compute``. Missing
    ``area`` means the box area (``bbox``) or the mask area (``segm``); ``difficult``
    only affects the VOC protocol (COCO has no such flag). Predicted labels outside
    1..K are dropped, as pycocotools drops unknown categories.

COCO result files
    ``write_coco_results(path, predictions_by_image_id, label_to_cat_id)`` writes the
    official results format (``[{"image_id", "category_id", "bbox": [x, y, w, h],
    "score"[, "segmentation"][, "keypoints"]}]``) with labels mapped back to the
    dataset's original category ids, e.g. ``{1: 1, 2: 2, ..., 80: 90}`` for COCO.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import DataError
from zoo.metrics.base import Evaluator

PROTOCOLS = ("coco", "voc07", "voc12")
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


# -- Pascal VOC ------------------------------------------------------------------------------

def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """AP of one class from its cumulative (recall, precision) points in score order.

    VOC2007: mean over the 11 recall levels r = 0, 0.1, ..., 1 of the highest precision
    at recall >= r (0 if none). VOC2010+: area under the precision envelope (precision
    made non-increasing in recall), summed where recall changes.
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(11) / 10.0:  # exact tenths, see the module docstring
            above = rec >= t
            ap += (prec[above].max() if above.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope: best precision at recall >= r
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired (P, 4) xyxy boxes -> (P,), continuous coordinates."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
             + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class VocClassResult:
    """One class under the VOC protocol: AP in both conventions and its PR curve."""

    num_gt: int                 # objects that count (not difficult, not crowd)
    voc07_ap: float | None      # None when the class has no object that counts
    voc12_ap: float | None
    recall: np.ndarray          # (D,) cumulative, in descending score order
    precision: np.ndarray       # (D,)


def voc_evaluate(det_image: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray,
                 det_labels: np.ndarray, gt_image: np.ndarray, gt_boxes: np.ndarray,
                 gt_labels: np.ndarray, gt_ignore: np.ndarray, labels: Iterable[int],
                 iou_threshold: float = 0.5) -> dict[int, VocClassResult]:
    """Pascal VOC matching and AP for every label in ``labels`` (conventions: module docstring).

    Detections are (D,) image indices, (D, 4) xyxy boxes, scores, labels, in arrival
    order (which breaks score ties); ground truth likewise with a (G,) ``ignore`` flag
    (difficult or crowd). Vectorised: every detection is paired with the ground truth
    of its own image and class at once, so the cost is one pass over those pairs.
    """
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    n_det, n_gt = len(det_scores), len(gt_labels)
    # Global order: descending score, ties in arrival order.
    order = np.argsort(-np.asarray(det_scores, np.float64), kind="stable")
    det_image, det_boxes = np.asarray(det_image)[order], det_boxes[order]
    det_labels = np.asarray(det_labels, np.int64)[order]
    gt_ignore = np.asarray(gt_ignore, bool)

    # Group key (image, label); ground truth sorted by it, stable so that the first of
    # equal-IoU objects (the devkit's argmax) is the earliest annotated.
    span = int(max(det_labels.max(initial=0), np.max(gt_labels, initial=0))) + 1
    det_key = np.asarray(det_image, np.int64) * span + det_labels
    gt_key = np.asarray(gt_image, np.int64) * span + np.asarray(gt_labels, np.int64)
    gt_order = np.argsort(gt_key, kind="stable")
    gt_key_sorted = gt_key[gt_order]
    start = np.searchsorted(gt_key_sorted, det_key, side="left")
    count = np.searchsorted(gt_key_sorted, det_key, side="right") - start  # (D,)

    matched_gt = np.full(n_det, -1, np.int64)  # index into the original gt arrays
    total = int(count.sum())
    if total:
        offsets = np.cumsum(count) - count
        pair_det = np.repeat(np.arange(n_det), count)                       # (P,)
        pair_gt = gt_order[start[pair_det] + np.arange(total) - offsets[pair_det]]
        iou = _pair_iou(det_boxes[pair_det], gt_boxes[pair_gt])
        has = count > 0
        best = np.zeros(n_det)
        best[has] = np.maximum.reduceat(iou, offsets[has])
        # First pair (per detection) that reaches its best IoU = the devkit's argmax.
        is_best = iou == best[pair_det]
        first = np.unique(pair_det[is_best], return_index=True)
        arg = pair_gt[np.flatnonzero(is_best)[first[1]]]
        winner = first[0]
        keep = best[winner] > iou_threshold
        matched_gt[winner[keep]] = arg[keep]
    hit = matched_gt >= 0
    ignored = hit & gt_ignore[np.where(hit, matched_gt, 0)] if n_gt else np.zeros(n_det, bool)
    # The first hit on an object (in global order) is a true positive; later hits are
    # duplicates. np.unique's index is the first occurrence because order is global.
    tp = np.zeros(n_det, bool)
    counted = hit & ~ignored
    if counted.any():
        idx = np.flatnonzero(counted)
        _, first_hit = np.unique(matched_gt[idx], return_index=True)
        tp[idx[first_hit]] = True

    out: dict[int, VocClassResult] = {}
    gt_labels = np.asarray(gt_labels, np.int64)
    for c in labels:
        npos = int(np.sum((gt_labels == c) & ~gt_ignore))
        sel = (det_labels == c) & ~ignored
        tpc = np.cumsum(tp[sel]).astype(np.float64)
        fpc = np.cumsum(~tp[sel]).astype(np.float64)
        prec = tpc / np.maximum(tpc + fpc, np.finfo(np.float64).eps)
        if npos == 0:
            out[c] = VocClassResult(0, None, None, np.zeros(0), np.zeros(0))
            continue
        rec = tpc / npos
        out[c] = VocClassResult(npos, voc_ap(rec, prec, True), voc_ap(rec, prec, False), rec, prec)
    return out


# -- COCO ------------------------------------------------------------------------------------

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


# -- tensors -> COCO records -----------------------------------------------------------------

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
    if m.ndim == 4:
        m = m[:, 0]
    if m.is_floating_point():
        return (m > 0.5).to(torch.uint8)
    return (m != 0).to(torch.uint8)


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)


def _image_size(images: Any, i: int) -> tuple[int, int]:
    if isinstance(images, torch.Tensor):
        return int(images.shape[-2]), int(images.shape[-1])
    if isinstance(images, (list, tuple)) and i < len(images) and isinstance(images[i], torch.Tensor):
        return int(images[i].shape[-2]), int(images[i].shape[-1])
    return 0, 0


def _to_numpy_split(tensors: list[torch.Tensor | None], dtype: Any) -> list[np.ndarray | None]:
    """One device->host copy for a list of per-image tensors, split back on the host."""
    present = [t for t in tensors if t is not None]
    if not present:
        return [None] * len(tensors)
    width = max(1, int(np.prod(present[0].shape[1:])))
    flat = torch.cat([t.detach().reshape(len(t), width) for t in present])
    flat = flat.cpu().numpy().astype(dtype, copy=False)
    out, pos = [], 0
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        n = len(t)
        out.append(flat[pos:pos + n].reshape(tuple(t.shape)))
        pos += n
    return out


class DetectionEvaluator(Evaluator):
    """COCO AP/AR (Lin et al. 2014, the official ``cocoeval``) and Pascal VOC AP
    (Everingham et al. 2010; VOC2007 11-point and VOC2010+ all-point) of detections.

    ``update(predictions, batch)``: ``predictions`` is one dict per image with
    ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``labels`` (N,) in 1..K (plus
    ``masks`` (N, H, W) or (N, 1, H, W) for ``segm``, ``keypoints`` (N, P, 3) for
    ``keypoints``); ``batch`` is ``(images, targets)`` with torchvision-style target
    dicts (``boxes``, ``labels``, optional ``image_id``, ``iscrowd``, ``area``,
    ``difficult``, ``masks``, ``keypoints`` (N, P, 3) with visibility). Images without
    ``image_id`` are numbered in arrival order; with ids, a repeated id (a distributed
    sampler's padding) is evaluated once.

    ``compute()`` gives ``map, map_50, map_75, map_small, map_medium, map_large,
    mar_1, mar_10, mar_100, mar_small, mar_medium, mar_large`` (keypoints: ``map,
    map_50, map_75, map_medium, map_large, mar, mar_50, mar_75, mar_medium,
    mar_large``), ``voc07_map``, ``voc12_map`` for the chosen ``protocols`` and
    ``per_class`` {name: {ap, ap50, ap75, ar, voc07_ap, voc12_ap, num_gt}} with
    None for a class without ground truth.
    """

    state_keys = ("records",)

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 iou_type: str = "bbox", protocols: Sequence[str] = PROTOCOLS, *,
                 keypoint_sigmas: Sequence[float] | None = None,
                 backend: str = "faster_coco_eval") -> None:
        if iou_type not in IOU_TYPES:
            raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
        if isinstance(protocols, str):
            protocols = (protocols,)
        bad = [p for p in protocols if p not in PROTOCOLS]
        if bad:
            raise ValueError(f"unknown protocol(s) {bad}; valid: {PROTOCOLS}")
        if iou_type != "bbox":  # VOC AP is defined on boxes only
            protocols = tuple(p for p in protocols if p == "coco") or ("coco",)
        self.num_classes = int(num_classes)
        self.class_names = (list(class_names) if class_names
                            else [str(i) for i in range(1, self.num_classes + 1)])
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        self.iou_type = iou_type
        self.protocols = tuple(protocols)
        self.keypoint_sigmas = keypoint_sigmas
        self.backend = backend
        self.last_coco: CocoEvaluation | None = None
        self.last_voc: dict[int, VocClassResult] | None = None
        super().__init__()

    def reset(self) -> None:
        self.records: list[dict[str, Any]] = []

    # -- accumulation ------------------------------------------------------------------------
    def update(self, predictions: Sequence[Mapping[str, torch.Tensor]], batch: Any) -> None:
        images, targets = batch[0], batch[1]
        if len(predictions) != len(targets):
            raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
        boxes = _to_numpy_split([p["boxes"] for p in predictions], np.float32)
        scores = _to_numpy_split([p["scores"] for p in predictions], np.float32)
        labels = _to_numpy_split([p["labels"] for p in predictions], np.int64)
        gboxes = _to_numpy_split([t["boxes"] for t in targets], np.float32)
        glabels = _to_numpy_split([t["labels"] for t in targets], np.int64)
        crowd = _to_numpy_split([_opt(t, "iscrowd") for t in targets], np.int64)
        area = _to_numpy_split([_opt(t, "area") for t in targets], np.float64)
        difficult = _to_numpy_split([_opt(t, "difficult") for t in targets], np.int64)
        kpt = gkpt = [None] * len(targets)
        if self.iou_type == "keypoints":
            kpt = _to_numpy_split([p["keypoints"] for p in predictions], np.float32)
            gkpt = _to_numpy_split([t["keypoints"] for t in targets], np.float32)
        for i, (p, t) in enumerate(zip(predictions, targets)):
            height, width = _image_size(images, i)
            rec: dict[str, Any] = {
                "image_id": _int_or_none(t.get("image_id")), "height": height, "width": width,
                "boxes": boxes[i].reshape(-1, 4), "scores": scores[i].reshape(-1),
                "labels": labels[i].reshape(-1), "gt_boxes": gboxes[i].reshape(-1, 4),
                "gt_labels": glabels[i].reshape(-1),
                "gt_crowd": None if crowd[i] is None else crowd[i].reshape(-1),
                "gt_area": None if area[i] is None else area[i].reshape(-1),
                "gt_difficult": None if difficult[i] is None else difficult[i].reshape(-1),
            }
            if self.iou_type == "segm":
                pm, gm = _binary_masks(p["masks"]), _binary_masks(t["masks"])
                if pm.shape[-2:] != gm.shape[-2:]:
                    raise ValueError(f"predicted masks are {tuple(pm.shape[-2:])} but target masks "
                                     f"{tuple(gm.shape[-2:])}: paste masks at the target's size")
                rec["masks"] = _rle_encode(pm.cpu().numpy())
                rec["gt_masks"] = _rle_encode(gm.cpu().numpy())
                if not height:
                    rec["height"], rec["width"] = int(gm.shape[-2]), int(gm.shape[-1])
            if self.iou_type == "keypoints":
                rec["keypoints"], rec["gt_keypoints"] = kpt[i], gkpt[i]
            self.records.append(rec)

    # -- conversion ----------------------------------------------------------------------------
    def _unique_records(self) -> tuple[list[dict[str, Any]], list[int]]:
        """Records once per image and their COCO image ids (given, or arrival order)."""
        if self.records and all(r["image_id"] is not None for r in self.records):
            seen: set[int] = set()
            recs = []
            for r in self.records:
                if r["image_id"] not in seen:  # padding from a distributed sampler
                    seen.add(r["image_id"])
                    recs.append(r)
            return recs, [r["image_id"] for r in recs]
        return list(self.records), list(range(1, len(self.records) + 1))

    def to_coco(self) -> tuple[dict, list[dict]]:
        """(ground-truth dataset dict, results list) in COCO's json formats, labels as category ids."""
        recs, ids = self._unique_records()
        kind = self.iou_type
        images, anns, results = [], [], []
        for img_id, r in zip(ids, recs):
            images.append({"id": img_id, "height": r["height"], "width": r["width"]})
            labels = r["gt_labels"]
            if len(labels) and (labels.min() < 1 or labels.max() > self.num_classes):
                raise DataError(
                    f"ground-truth label {int(labels.min() if labels.min() < 1 else labels.max())} "
                    f"of image {img_id} is outside 1..{self.num_classes}: detection labels are "
                    f"1..num_classes with 0 reserved for background")
            n = len(labels)
            xywh = _xywh(r["gt_boxes"]).tolist()
            crowd = r["gt_crowd"].tolist() if r["gt_crowd"] is not None else [0] * n
            if r["gt_area"] is not None:
                area = r["gt_area"].tolist()
            elif kind == "segm":
                from faster_coco_eval.core import mask as mask_utils

                area = [float(a) for a in mask_utils.area(r["gt_masks"])] if n else []
            else:
                area = [b[2] * b[3] for b in xywh]
            for j in range(n):
                a = {"id": len(anns) + 1, "image_id": img_id, "category_id": int(labels[j]),
                     "bbox": xywh[j], "area": area[j], "iscrowd": int(crowd[j])}
                if kind == "segm":
                    a["segmentation"] = r["gt_masks"][j]
                elif kind == "keypoints":
                    k = r["gt_keypoints"][j]
                    a["keypoints"] = k.reshape(-1).astype(np.float64).tolist()
                    a["num_keypoints"] = int((k[:, 2] > 0).sum())
                anns.append(a)
            if kind == "bbox":
                continue  # below, for all images at once
            keep = np.flatnonzero((r["labels"] >= 1) & (r["labels"] <= self.num_classes))
            cats, scores = r["labels"][keep].tolist(), r["scores"][keep].astype(np.float64).tolist()
            if kind == "segm":
                results.extend({"image_id": img_id, "category_id": c, "segmentation": r["masks"][j],
                                "score": s} for c, j, s in zip(cats, keep.tolist(), scores))
            else:
                k = r["keypoints"][keep]
                kp = k.reshape(len(keep), int(np.prod(k.shape[1:]))).astype(np.float64).tolist()
                results.extend({"image_id": img_id, "category_id": c, "keypoints": k, "score": s}
                               for c, k, s in zip(cats, kp, scores))
        if kind == "bbox" and recs:
            # One concatenation and one list conversion per field: a .tolist() per image and
            # field dominates the conversion of a few hundred thousand detections.
            img = np.repeat(np.asarray(ids, np.int64), [len(r["scores"]) for r in recs])
            labels = np.concatenate([r["labels"] for r in recs])
            keep = (labels >= 1) & (labels <= self.num_classes)
            scores = np.concatenate([r["scores"] for r in recs])[keep].astype(np.float64)
            boxes = _xywh(np.concatenate([r["boxes"] for r in recs])[keep])
            results = [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s
                       in zip(img[keep].tolist(), labels[keep].tolist(), boxes.tolist(), scores.tolist())]
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]
        return {"images": images, "annotations": anns, "categories": categories}, results

    def _voc_arrays(self) -> dict[str, np.ndarray]:
        recs, _ = self._unique_records()
        det_n = [len(r["scores"]) for r in recs]
        gt_n = [len(r["gt_labels"]) for r in recs]

        def cat(key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            parts = [np.asarray(r[key], dtype).reshape(shape) for r in recs]
            return np.concatenate(parts) if parts else np.zeros((0, *shape[1:]), dtype)

        ignore = [(np.zeros(n, bool) if r["gt_difficult"] is None else r["gt_difficult"] != 0)
                  | (np.zeros(n, bool) if r["gt_crowd"] is None else r["gt_crowd"] != 0)
                  for r, n in zip(recs, gt_n)]
        return {
            "det_image": np.repeat(np.arange(len(recs)), det_n),
            "det_boxes": cat("boxes", (-1, 4), np.float64), "det_scores": cat("scores", (-1,), np.float64),
            "det_labels": cat("labels", (-1,), np.int64),
            "gt_image": np.repeat(np.arange(len(recs)), gt_n),
            "gt_boxes": cat("gt_boxes", (-1, 4), np.float64),
            "gt_labels": cat("gt_labels", (-1,), np.int64),
            "gt_ignore": np.concatenate(ignore) if ignore else np.zeros(0, bool),
        }

    # -- results -----------------------------------------------------------------------------
    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        labels = range(1, self.num_classes + 1)
        per_class: dict[str, dict[str, Any]] = {n: {} for n in self.class_names}
        if "coco" in self.protocols:
            gt, results = self.to_coco()
            ev = coco_evaluate(gt, results, self.iou_type, keypoint_sigmas=self._sigmas(),
                               backend=self.backend)
            self.last_coco = ev
            out.update(ev.summary())
            for cat, vals in ev.per_category().items():
                per_class[self.class_names[cat - 1]].update(vals)
        if "voc07" in self.protocols or "voc12" in self.protocols:
            voc = voc_evaluate(**self._voc_arrays(), labels=labels)
            self.last_voc = voc
            for c, res in voc.items():
                per_class[self.class_names[c - 1]]["num_gt"] = res.num_gt
            for proto in ("voc07", "voc12"):
                if proto not in self.protocols:
                    continue
                aps = [getattr(res, f"{proto}_ap") for res in voc.values()]
                defined = [a for a in aps if a is not None]
                out[f"{proto}_map"] = float(np.mean(defined)) if defined else -1.0
                for c, res in voc.items():
                    per_class[self.class_names[c - 1]][f"{proto}_ap"] = getattr(res, f"{proto}_ap")
        out["num_images"] = len(self._unique_records()[0])
        out["per_class"] = per_class
        return out

    def _sigmas(self) -> Sequence[float] | None:
        if self.iou_type != "keypoints":
            return None
        if self.keypoint_sigmas is not None:
            return self.keypoint_sigmas
        n = next((len(r["gt_keypoints"][0]) for r in self.records if len(r["gt_keypoints"])), 17)
        if n != 17:
            raise ValueError(f"keypoints have {n} points per object: pass keypoint_sigmas "
                             f"(COCO's defaults are for its 17 person keypoints)")
        return None

    def pr_curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per-class PR curves of the last ``compute()``: COCO's interpolated curve at IoU .50,
        else VOC's raw curve."""
        curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for c in range(1, self.num_classes + 1):
            name = self.class_names[c - 1]
            if self.last_coco is not None:
                curve = self.last_coco.pr_curve(c)
                if curve is not None:
                    curves[name] = curve
            elif self.last_voc is not None and self.last_voc[c].num_gt:
                curves[name] = (self.last_voc[c].recall, self.last_voc[c].precision)
        return curves

    def save_plots(self, directory: str | os.PathLike) -> list[Path]:
        """PR curves per class and AP per class of the last ``compute()`` as PNGs."""
        from zoo.metrics import plots

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        curves = self.pr_curves()
        if curves:
            written.append(plots.plot_pr_curves(curves, directory / "pr_curves.png"))
        if self.last_coco is None and self.last_voc is None:
            self.compute()
        ap = _per_class_values(self)
        if ap:
            key, vals = ap
            written.append(plots.plot_per_class_bars(vals, f"{key} per class", directory / "ap_per_class.png"))
        return written


def _per_class_values(ev: DetectionEvaluator) -> tuple[str, dict[str, float]] | None:
    if ev.last_coco is not None:
        per = ev.last_coco.per_category()
        vals = {ev.class_names[c - 1]: v["ap"] for c, v in per.items() if v["ap"] is not None}
        return "AP@[.50:.95]", vals
    if ev.last_voc is not None:
        key = "voc12_ap" if "voc12" in ev.protocols else "voc07_ap"
        vals = {ev.class_names[c - 1]: getattr(r, key) for c, r in ev.last_voc.items()
                if getattr(r, key) is not None}
        return key, vals
    return None


def _opt(t: Mapping[str, Any], key: str) -> torch.Tensor | None:
    v = t.get(key)
    if v is None:
        return None
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(v)


def _int_or_none(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        return int(v.reshape(-1)[0])
    return int(v)


def _numpy(v: Any, dtype: Any) -> np.ndarray:
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
