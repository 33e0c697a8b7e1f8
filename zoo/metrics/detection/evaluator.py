"""``DetectionEvaluator``: torchvision-style detections and targets in, COCO and VOC AP out.

``update`` takes torchvision-style predictions and targets (boxes xyxy in pixels,
labels 1..K with 0 the background). Each batch is copied to the CPU once and kept as
arrays (masks as COCO run-length encodings, to bound memory); the conversion to COCO
records happens once, in ``compute``. Missing ``area`` means the box area (``bbox``)
or the mask area (``segm``) of a ground-truth object; mask results carry their box, so
detections are sized by their box for the area ranges, exactly as pycocotools scores a
results file with boxes and masks; ``difficult`` only affects the VOC protocols (COCO has no
such flag). Predicted labels outside 1..K are dropped, as pycocotools drops unknown
categories. The protocols themselves live in ``coco`` and ``voc``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import DataError
from zoo.metrics.base import Evaluator
from zoo.metrics.detection.coco import (
    IOU_TYPES,
    CocoEvaluation,
    _binary_masks,
    _rle_encode,
    _xywh,
    coco_evaluate,
)
from zoo.metrics.detection.voc import VOC_PROTOCOLS, VocClassResult, VocScores, parse_protocols, voc_scores

# What a detector's validation reports unless its evaluator config says otherwise.
DEFAULT_PROTOCOLS = ("coco", "voc07", "voc12")


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
    mar_large``), ``voc07_map``, ``voc12_map``, ``voc07_devkit_map`` for the chosen
    ``protocols`` (default ``DEFAULT_PROTOCOLS``; any of ``coco, voc07, voc12,
    voc07_devkit``, a comma-separated string or ``"all"``) and ``per_class`` {name:
    {ap, ap50, ap75, ar, voc07_ap, voc12_ap, voc07_devkit_ap, num_gt}} with None for a
    class without ground truth.
    """

    state_keys = ("records",)

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 iou_type: str = "bbox", protocols: str | Sequence[str] = DEFAULT_PROTOCOLS, *,
                 keypoint_sigmas: Sequence[float] | None = None,
                 backend: str = "faster_coco_eval") -> None:
        if iou_type not in IOU_TYPES:
            raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
        protocols = parse_protocols(protocols, DEFAULT_PROTOCOLS)
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
        self.last_voc_scores: VocScores | None = None
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
                # Each mask result carries its box, as a results file from
                # write_coco_results (and Detectron's) does: pycocotools' loadRes then sizes
                # detections by their box for the area ranges, so validation, evaluate.py
                # and the file it writes give the same numbers.
                dxywh = _xywh(r["boxes"]).tolist()
                results.extend({"image_id": img_id, "category_id": c, "segmentation": r["masks"][j],
                                "bbox": dxywh[j], "score": s}
                               for c, j, s in zip(cats, keep.tolist(), scores))
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
        if any(p in VOC_PROTOCOLS for p in self.protocols):
            voc = voc_scores(self.protocols, labels, **self._voc_arrays())
            self.last_voc, self.last_voc_scores = voc.results, voc
            for c, n in voc.num_gt.items():
                per_class[self.class_names[c - 1]]["num_gt"] = n
            for proto, m in voc.maps.items():
                out[f"{proto}_map"] = m
                for c, ap in voc.aps[proto].items():
                    per_class[self.class_names[c - 1]][f"{proto}_ap"] = ap
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
    if ev.last_voc_scores is not None:
        proto = next(p for p in ("voc12", "voc07", "voc07_devkit") if p in ev.last_voc_scores.aps)
        vals = {ev.class_names[c - 1]: ap for c, ap in ev.last_voc_scores.aps[proto].items()
                if ap is not None}
        return f"{proto}_ap", vals
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

