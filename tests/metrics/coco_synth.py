"""Randomised detection sets and an independent conversion to pycocotools' inputs.

Shared by the differential tests and ``benchmarks/eval_speed.py``. The sets cover
the cases where COCO evaluators disagree: crowd regions, images without ground
truth or without detections, more than 100 detections per image, categories never
predicted and categories without ground truth, tied scores, boxes on the area-range
boundaries.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import torch


def random_detection_set(seed: int, n_images: int, num_classes: int, *, mean_objects: float = 4.0,
                         mean_detections: float = 20.0, size: int = 256, crowd_p: float = 0.08,
                         difficult_p: float = 0.0, masks: bool = False, keypoints: int = 0):
    """(predictions, targets): lists of torchvision-style dicts, one per image.

    The last class never has ground truth; the one before it is never predicted.
    """
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for i in range(n_images):
        n_gt = 0 if rng.random() < 0.1 else int(rng.poisson(mean_objects))
        wh = rng.uniform(2, size * 0.7, (n_gt, 2))
        # a few objects exactly on the small/medium and medium/large boundaries
        edge = rng.random(n_gt) < 0.1
        wh[edge] = rng.choice([32.0, 96.0], (int(edge.sum()), 1))
        xy = rng.uniform(0, 1, (n_gt, 2)) * (size - wh)
        gt = np.concatenate([xy, xy + wh], 1)
        gl = rng.integers(1, num_classes, n_gt)  # never the last class
        crowd = (rng.random(n_gt) < crowd_p).astype(np.int64)
        n_det = 0 if rng.random() < 0.1 else int(rng.poisson(mean_detections))
        if rng.random() < 0.05:
            n_det = 130  # beyond the 100-detection cut
        src = rng.integers(0, max(n_gt, 1), n_det)
        near = (rng.random(n_det) < 0.7) & (n_gt > 0)
        dwh = rng.uniform(2, size * 0.7, (n_det, 2))
        dxy = rng.uniform(0, 1, (n_det, 2)) * (size - dwh)
        det = np.concatenate([dxy, dxy + dwh], 1)
        if n_gt:
            jitter = rng.normal(0, 0.08, (n_det, 4)) * np.tile(wh[src], 2)
            det[near] = gt[src[near]] + jitter[near]
            det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 0.5)
        dl = rng.integers(1, num_classes + 1, n_det)
        if n_gt:
            keep_label = near & (rng.random(n_det) < 0.8)
            dl[keep_label] = gl[src[keep_label]]
        dl[dl == num_classes - 1] = 1  # one category is never predicted
        scores = np.round(rng.random(n_det), 2)  # two decimals: many ties
        p = {"boxes": torch.tensor(det, dtype=torch.float32),
             "scores": torch.tensor(scores, dtype=torch.float32),
             "labels": torch.tensor(dl, dtype=torch.int64)}
        t = {"boxes": torch.tensor(gt, dtype=torch.float32), "labels": torch.tensor(gl, dtype=torch.int64),
             "iscrowd": torch.tensor(crowd), "image_id": 1000 + 3 * i}
        if difficult_p:
            t["difficult"] = torch.tensor(rng.random(n_gt) < difficult_p)
        if masks:
            yy, xx = np.mgrid[:size, :size]

            def ellipse(b, xx=xx, yy=yy):
                cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
                rx, ry = max((b[2] - b[0]) / 2, 1), max((b[3] - b[1]) / 2, 1)
                return (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)

            t["masks"] = torch.tensor(np.stack([ellipse(b) for b in gt]) if n_gt
                                      else np.zeros((0, size, size), np.uint8))
            pm = np.stack([ellipse(b) for b in det]).astype(np.float32) if n_det else \
                np.zeros((0, size, size), np.float32)
            p["masks"] = torch.tensor(pm * rng.uniform(0.3, 1.0, (n_det, 1, 1)).astype(np.float32))[:, None]
        if keypoints:
            def kps(boxes, n):
                u = rng.uniform(0, 1, (len(boxes), n, 2))
                xy = boxes[:, None, :2] + u * (boxes[:, None, 2:] - boxes[:, None, :2])
                vis = rng.integers(0, 3, (len(boxes), n, 1)).astype(np.float64)
                return np.concatenate([xy, vis], 2)

            gk = kps(gt, keypoints)
            dk = kps(det, keypoints)
            if n_gt:
                dk[near] = gk[src[near]] + np.concatenate(
                    [rng.normal(0, 2.0, (int(near.sum()), keypoints, 2)),
                     np.ones((int(near.sum()), keypoints, 1))], 2)
            t["keypoints"] = torch.tensor(gk, dtype=torch.float32)
            p["keypoints"] = torch.tensor(dk, dtype=torch.float32)
        preds.append(p)
        targets.append(t)
    return preds, targets


def reference_inputs(preds, targets, num_classes: int, iou_type: str = "bbox", size: int = 256):
    """(gt dataset, results) for pycocotools, written out field by field from the tensors."""
    from pycocotools import mask as mask_utils

    images, anns, results = [], [], []
    for p, t in zip(preds, targets):
        img = int(t["image_id"])
        images.append({"id": img, "height": size, "width": size})
        for j in range(len(t["labels"])):
            x1, y1, x2, y2 = [float(v) for v in t["boxes"][j]]
            a = {"id": len(anns) + 1, "image_id": img, "category_id": int(t["labels"][j]),
                 "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": int(t["iscrowd"][j])}
            if iou_type == "segm":
                m = np.asfortranarray(t["masks"][j].numpy().astype(np.uint8))
                a["segmentation"] = mask_utils.encode(m)
                a["area"] = float(mask_utils.area(a["segmentation"]))
            else:
                a["area"] = (x2 - x1) * (y2 - y1)
            if iou_type == "keypoints":
                k = t["keypoints"][j].double().numpy()
                a["keypoints"] = k.reshape(-1).tolist()
                a["num_keypoints"] = int((k[:, 2] > 0).sum())
            anns.append(a)
        for j in range(len(p["labels"])):
            x1, y1, x2, y2 = [float(v) for v in p["boxes"][j]]
            r = {"image_id": img, "category_id": int(p["labels"][j]), "score": float(p["scores"][j])}
            if iou_type == "bbox":
                r["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            elif iou_type == "segm":  # with its box, as instance-segmentation results files are
                m = (p["masks"][j, 0] > 0.5).numpy().astype(np.uint8)
                r["segmentation"] = mask_utils.encode(np.asfortranarray(m))
                r["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                r["keypoints"] = p["keypoints"][j].double().numpy().reshape(-1).tolist()
            results.append(r)
    cats = [{"id": k, "name": str(k)} for k in range(1, num_classes + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, results


def pycocotools_eval(gt: dict, results: list, iou_type: str = "bbox", sigmas=None):
    """pycocotools' COCOeval after evaluate/accumulate/summarize (on copies of the inputs)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco, dt, iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev
