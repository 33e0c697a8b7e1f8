"""Box utilities shared by the hand-written detectors (YOLOv1, YOLOv2) and the wrappers.

Decoding to final detections, one-ground-truth-per-slot assignment, IoU of box shapes
and the YOLOv2 k-means anchor fit all live here so no detector carries its own copy.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, box_iou

__all__ = ["box_iou", "wh_iou", "kmeans_anchors", "postprocess", "select_unique",
           "cell_of"]


def wh_iou(wh1: torch.Tensor, wh2: torch.Tensor) -> torch.Tensor:
    """IoU of boxes that share a centre: (N, 2) x (M, 2) widths/heights -> (N, M)."""
    inter = torch.min(wh1[:, None], wh2[None]).clamp(min=0).prod(-1)
    union = wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter
    return inter / union.clamp(min=1e-12)


def kmeans_anchors(wh: torch.Tensor, k: int, *, iters: int = 300, restarts: int = 10,
                   seed: int = 0) -> torch.Tensor:
    """YOLOv2's anchor priors: k-means on box shapes with distance ``1 - IoU`` (Redmon &
    Farhadi, 2017, sec. "Dimension Clusters"), so large boxes do not dominate as they
    would under Euclidean distance. ``wh`` (N, 2) > 0; returns (k, 2) sorted by area.

    Centroids start k-means++ style (each next one drawn in proportion to its distance
    from the chosen ones); of ``restarts`` runs the one with the highest mean IoU of a
    box with its best centroid wins, since a single run can settle in a local optimum.
    A cluster that empties is re-seeded at the box that fits the current centroids
    worst, so no centroid becomes NaN.
    """
    wh = wh.double()
    wh = wh[(wh > 0).all(1)]
    if len(wh) == 0:
        raise ValueError("kmeans_anchors needs at least one box with positive size")
    g = torch.Generator().manual_seed(seed)
    best, best_fit = None, -1.0
    k_eff = min(k, len(torch.unique(wh, dim=0)))  # no more clusters than distinct shapes
    for _ in range(max(restarts, 1)):
        cent = _kmeans_once(wh, k_eff, iters, g)
        fit = float(wh_iou(wh, cent).max(1).values.mean())
        if fit > best_fit:
            best, best_fit = cent, fit
    if len(best) < k:  # fewer distinct shapes than anchors: repeat the largest
        best = torch.cat([best, best[-1:].expand(k - len(best), 2)])
    return best[best.prod(1).argsort(stable=True)].float()


def _kmeans_once(wh: torch.Tensor, k: int, iters: int, g: torch.Generator) -> torch.Tensor:
    cent = wh[torch.randint(len(wh), (1,), generator=g)]
    while len(cent) < k:  # k-means++ seeding under the 1 - IoU distance
        d = (1 - wh_iou(wh, cent)).min(1).values
        p = d / d.sum() if d.sum() > 0 else torch.full_like(d, 1 / len(d))
        cent = torch.cat([cent, wh[torch.multinomial(p, 1, generator=g)]])
    assign = None
    for _ in range(iters):
        iou = wh_iou(wh, cent)  # (N, k)
        new_assign = iou.argmax(1)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        for j in range(k):
            members = wh[assign == j]
            if len(members):
                cent[j] = members.mean(0)
            else:
                worst = iou.max(1).values.argmin()
                cent[j] = wh[worst]
                assign[worst] = j
    return cent


def select_unique(keys: torch.Tensor, priority: torch.Tensor) -> torch.Tensor:
    """Indices that keep, for each distinct key, the element with the highest priority.

    Used when several ground-truth boxes land on one prediction slot (a YOLO cell or
    cell-anchor pair): one slot predicts one object, and we keep the largest."""
    if len(keys) == 0:
        return keys.new_zeros(0, dtype=torch.long)
    order = torch.argsort(priority, stable=True)
    k = keys[order]
    uniq, inv = torch.unique(k, return_inverse=True)
    last = torch.full((len(uniq),), -1, dtype=torch.long, device=keys.device)
    last = last.scatter_reduce(0, inv, torch.arange(len(k), device=keys.device), "amax")
    return order[last]


def cell_of(boxes: torch.Tensor, grid: int, size: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                 torch.Tensor]:
    """For xyxy ``boxes`` (N, 4) in an image of side ``size`` split into ``grid`` x ``grid``
    cells: the (row, col) of the cell holding each centre and the centre's offset inside
    that cell, (N, 2) in [0, 1) as (x, y)."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2 * grid / size  # centre in cell units
    col = c[:, 0].floor().clamp(0, grid - 1)
    row = c[:, 1].floor().clamp(0, grid - 1)
    off = c - torch.stack([col, row], 1)
    return row.long(), col.long(), off


def postprocess(boxes: torch.Tensor, scores: torch.Tensor, *, score_thresh: float,
                nms_thresh: float, max_detections: int, width: float, height: float,
                pre_nms_top_n: int = 2000) -> dict[str, torch.Tensor]:
    """Final detections of one image from candidate ``boxes`` (N, 4) xyxy and per-class
    ``scores`` (N, C) (no background column): every (box, class) pair above
    ``score_thresh`` is a candidate, the best ``pre_nms_top_n`` go through per-class NMS
    (``torchvision.ops.batched_nms``), and the best ``max_detections`` survive. Boxes
    are clipped to ``width`` x ``height``; labels are 1-based."""
    n, c = scores.shape
    flat = scores.reshape(-1)
    keep = torch.nonzero(flat > score_thresh).squeeze(1)
    if len(keep) > pre_nms_top_n:
        keep = keep[flat[keep].topk(pre_nms_top_n).indices]
    box_idx, cls = keep // c, keep % c
    b = boxes[box_idx].clone()
    b[:, 0::2] = b[:, 0::2].clamp(0, width)
    b[:, 1::2] = b[:, 1::2].clamp(0, height)
    s = flat[keep]
    ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    b, s, cls = b[ok], s[ok], cls[ok]
    kept = batched_nms(b, s, cls, nms_thresh)[:max_detections]
    return {"boxes": b[kept], "scores": s[kept], "labels": cls[kept] + 1}
