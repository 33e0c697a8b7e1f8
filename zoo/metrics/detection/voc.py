"""Pascal VOC detection AP, in two conventions.

Continuous (``voc07``, ``voc12``)
    The devkit's matching on continuous xyxy pixel boxes: detections of a class are
    taken in descending score over the whole split; each is assigned to the ground
    truth of its image with the highest IoU, whether or not that one is already
    taken, and is a hit when that IoU exceeds 0.5 (strictly); a hit on a
    ``difficult`` (or crowd) object counts as neither true nor false positive; a
    second hit on the same object is a false positive. No cap on detections per
    image. AP is VOC2007's 11-point interpolation (recall levels exactly 0, 0.1, ...,
    1; ports that step with ``np.arange(0, 1.1, 0.1)`` miss a recall of exactly 0.3,
    0.6 or 0.7) or VOC2010+'s area under the monotone precision envelope. IoU has no
    "+1" on widths, and equal scores keep arrival order (stable sort).

Devkit (``voc07_devkit``)
    The arithmetic of the official VOC2007 devkit (``VOCevaldet.m``), so that numbers
    compare with published VOC2007 results. Boxes are read as the devkit reads them:
    inclusive integer pixel indices (the annotation xml's ``xmin..xmax``, or the
    same shifted by one as py-faster-rcnn-style code keeps them), so

    * a box's width is ``x2 - x1 + 1`` and its height ``y2 - y1 + 1``, for the
      intersection and for both areas of the union; boxes overlap only when both
      the intersection's width and height are positive;
    * a detection is a hit when its best IoU is at least 0.5 (``>=``, where the
      continuous protocol asks for ``>``); the best is the first ground truth (in
      annotation order) reaching the highest IoU, difficult objects included;
    * a hit on a difficult object is neither a true nor a false positive, a hit on
      an object already taken is a false positive, and the number of positives is
      the count of non-difficult objects;
    * detections are sorted by descending score with MATLAB's stable ``sort``;
    * AP is the mean over the 11 levels of MATLAB's ``0:0.1:1`` of the highest
      precision at recall ``>=`` the level (0 when none). MATLAB's colon builds the
      first half of that range as ``0 + k*0.1`` and the second half as
      ``1 - (10-k)*0.1``, so its fourth level is the double ``3*0.1``
      (0.30000000000000004): a recall of exactly 0.3 does not reach it, while 0.6
      and 0.7 are exact. ``DEVKIT07_RECALL_LEVELS`` holds those doubles.

    The zoo's VOC reader gives continuous corners ``(xmin - 1, ymin - 1, xmax,
    ymax)``; on those boxes ``voc07`` already measures the devkit's widths, and
    ``voc07_devkit`` adds one more pixel per side. Use ``voc07_devkit`` for boxes in
    the devkit's inclusive convention (results files written for the VOC server).
    Facts from the VOC2007 devkit's ``VOCevaldet.m`` (overlap test, ``>=``
    minoverlap, difficult handling, the ``for t=0:0.1:1`` loop) and MathWorks'
    description of the colon operator's two-ended construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from zoo.errors import UserError, choices

VOC_PROTOCOLS = ("voc07", "voc12", "voc07_devkit")
PROTOCOLS = ("coco", *VOC_PROTOCOLS)

# MATLAB's 0:0.1:1 (see the module docstring): 0 + k*0.1 up to the middle, 1 - (10-k)*0.1 after.
DEVKIT07_RECALL_LEVELS = tuple([k * 0.1 for k in range(6)] + [1.0 - (10 - k) * 0.1 for k in range(6, 11)])
# Exact tenths: the 11 levels as the VOC2007 paper states them.
VOC07_RECALL_LEVELS = tuple(k / 10.0 for k in range(11))


def parse_protocols(value: str | Sequence[str] | None, default: Sequence[str] = ("coco",)) -> tuple[str, ...]:
    """``"coco"``, ``"voc07,voc12"``, ``"all"`` (or a sequence of names) -> protocol names.

    The one parser of ``protocol=`` for file mode and ``evaluator.protocols`` for
    training; an unknown name is a ``UserError`` naming the valid ones.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return tuple(default)
    if isinstance(value, str):
        if value.strip() == "all":
            return PROTOCOLS
        names = [v.strip() for v in value.split(",") if v.strip()]
    else:
        names = [str(v).strip() for v in value]
    if "all" in names:
        return PROTOCOLS
    bad = [p for p in names if p not in PROTOCOLS]
    if bad or not names:
        raise UserError(f"unknown protocol '{bad[0] if bad else value}'; valid protocols: "
                        f"{choices(PROTOCOLS)} (comma-separated), or all")
    return tuple(dict.fromkeys(names))  # order kept, repeats dropped


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False,
           levels: Sequence[float] = VOC07_RECALL_LEVELS) -> float:
    """AP of one class from its cumulative (recall, precision) points in score order.

    VOC2007: mean over the 11 recall ``levels`` (exact tenths; the devkit's are
    ``DEVKIT07_RECALL_LEVELS``) of the highest precision at recall >= the level (0 if
    none). VOC2010+: area under the precision envelope (precision made non-increasing
    in recall), summed where recall changes.
    """
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in levels:
            above = rec >= t
            ap += (prec[above].max() if above.any() else 0.0) / len(levels)
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # envelope: best precision at recall >= r
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _pair_iou(a: np.ndarray, b: np.ndarray, extra: float = 0.0) -> np.ndarray:
    """IoU of paired (P, 4) xyxy boxes -> (P,). ``extra`` = 1 counts inclusive pixel
    corners (the devkit's ``x2 - x1 + 1``); 0 is continuous coordinates."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + extra
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + extra
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    union = ((a[:, 2] - a[:, 0] + extra) * (a[:, 3] - a[:, 1] + extra)
             + (b[:, 2] - b[:, 0] + extra) * (b[:, 3] - b[:, 1] + extra) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap & (union > 0), inter / union, 0.0)


@dataclass
class VocClassResult:
    """One class under the VOC matching: 11-point and all-point AP and its PR curve.

    With ``devkit=True`` the matching is the devkit's (+1 pixel, IoU >= 0.5) and
    ``voc07_ap`` uses the devkit's recall levels: that is the ``voc07_devkit`` AP.
    """

    num_gt: int                 # objects that count (not difficult, not crowd)
    voc07_ap: float | None      # None when the class has no object that counts
    voc12_ap: float | None
    recall: np.ndarray          # (D,) cumulative, in descending score order
    precision: np.ndarray       # (D,)
    devkit: bool = False


def voc_evaluate(det_image: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray,
                 det_labels: np.ndarray, gt_image: np.ndarray, gt_boxes: np.ndarray,
                 gt_labels: np.ndarray, gt_ignore: np.ndarray, labels: Iterable[int],
                 iou_threshold: float = 0.5, devkit: bool = False) -> dict[int, VocClassResult]:
    """Pascal VOC matching and AP for every label in ``labels`` (conventions: module docstring).

    ``devkit=False``: continuous boxes, a hit needs IoU > ``iou_threshold``.
    ``devkit=True``: the VOC2007 devkit's inclusive pixel boxes (+1 on every width and
    height), a hit needs IoU >= ``iou_threshold``, 11-point AP at MATLAB's levels.

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
        iou = _pair_iou(det_boxes[pair_det], gt_boxes[pair_gt], 1.0 if devkit else 0.0)
        has = count > 0
        best = np.zeros(n_det)
        best[has] = np.maximum.reduceat(iou, offsets[has])
        # First pair (per detection) that reaches its best IoU = the devkit's argmax.
        is_best = iou == best[pair_det]
        first = np.unique(pair_det[is_best], return_index=True)
        arg = pair_gt[np.flatnonzero(is_best)[first[1]]]
        winner = first[0]
        keep = best[winner] >= iou_threshold if devkit else best[winner] > iou_threshold
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
            out[c] = VocClassResult(0, None, None, np.zeros(0), np.zeros(0), devkit)
            continue
        rec = tpc / npos
        levels = DEVKIT07_RECALL_LEVELS if devkit else VOC07_RECALL_LEVELS
        out[c] = VocClassResult(npos, voc_ap(rec, prec, True, levels), voc_ap(rec, prec, False),
                                rec, prec, devkit)
    return out


@dataclass
class VocScores:
    """The VOC protocols asked for, over one split: mAP and AP per label for each."""

    maps: dict[str, float]                      # {protocol: mAP over labels with objects, -1 if none}
    aps: dict[str, dict[int, float | None]]     # {protocol: {label: AP or None}}
    num_gt: dict[int, int]                      # {label: objects that count}
    curves: dict[int, tuple[np.ndarray, np.ndarray]]  # {label: (recall, precision)}, labels with objects
    results: dict[int, VocClassResult]          # the continuous run if any, else the devkit run


def voc_scores(protocols: Iterable[str], labels: Iterable[int], **arrays: np.ndarray) -> VocScores:
    """Run the VOC protocols among ``protocols`` (others are ignored) on ``arrays``, the
    keyword arguments of ``voc_evaluate``: one matching for voc07/voc12, one for
    voc07_devkit."""
    protocols = [p for p in protocols if p in VOC_PROTOCOLS]
    labels = list(labels)
    runs: dict[bool, dict[int, VocClassResult]] = {}
    if "voc07" in protocols or "voc12" in protocols:
        runs[False] = voc_evaluate(**arrays, labels=labels)
    if "voc07_devkit" in protocols:
        runs[True] = voc_evaluate(**arrays, labels=labels, devkit=True)
    maps: dict[str, float] = {}
    aps: dict[str, dict[int, float | None]] = {}
    for proto in protocols:
        res = runs[proto == "voc07_devkit"]
        field = "voc12_ap" if proto == "voc12" else "voc07_ap"
        aps[proto] = {c: getattr(r, field) for c, r in res.items()}
        defined = [a for a in aps[proto].values() if a is not None]
        maps[proto] = float(np.mean(defined)) if defined else -1.0
    main = runs.get(False, runs.get(True, {}))
    return VocScores(maps, aps, {c: r.num_gt for c, r in main.items()},
                     {c: (r.recall, r.precision) for c, r in main.items() if r.num_gt}, main)
