"""What every detector shares: training targets without crowd regions, input resizing
and the post-processing of candidates (the evaluator, pictures, ``predict.py`` and COCO
results files are the detection task's, ``zoo.tasks.detection``).

Batches are ``zoo.data.batches.DetectionBatch`` (images, targets): a list of (3, H, W)
float images in [0, 1] at their own sizes and a list of torchvision target dicts (see
``zoo.data.detection``).
``predict`` returns one ``{"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,) 1..K}``
per image, in that image's own pixels.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from zoo.data.batches import detection_images
from zoo.models.base import ZooModel


def training_targets(targets: Sequence[dict[str, Any]],
                     masks: bool = False) -> list[dict[str, torch.Tensor]]:
    """``boxes`` and ``labels`` (and with ``masks`` the (N, H, W) instance ``masks``) of
    each image without its crowd regions (``iscrowd == 1`` marks a region to ignore in
    evaluation, never an object to learn)."""
    out = []
    for t in targets:
        keep = t["iscrowd"] == 0 if "iscrowd" in t else torch.ones(len(t["labels"]), dtype=torch.bool,
                                                                  device=t["labels"].device)
        t_out = {"boxes": t["boxes"][keep].reshape(-1, 4).float(), "labels": t["labels"][keep]}
        if masks:
            t_out["masks"] = t["masks"][keep]
        out.append(t_out)
    return out


def resize_batch(images: Sequence[torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images resized to ``size`` x ``size``: (B, 3, size, size) and the (B, 2) factors
    ``(size / W, size / H)`` that map each image's pixels to the resized ones."""
    scales, out = [], []
    for im in images:
        h, w = im.shape[-2:]
        scales.append((size / w, size / h))
        out.append(im if (h, w) == (size, size) else
                   F.interpolate(im[None], size=(size, size), mode="bilinear",
                                 align_corners=False, antialias=max(h, w) > size)[0])
    return torch.stack(out), torch.tensor(scales, dtype=torch.float32, device=images[0].device)


class Detector(ZooModel):
    """Shared behaviour of the zoo's object detectors (the subclasses name their papers).

    Subclasses implement ``training_step`` and ``detect(images) -> list[dict]``;
    ``predict(batch)`` calls ``detect`` on the batch's images.
    """

    task = "detection"
    # What the detection task scores by default: boxes; "segm" too for a model whose
    # predictions carry instance masks.
    iou_types: tuple[str, ...] = ("bbox",)

    def __init__(self, *, num_classes: int, image_size: int, score_thresh: float = 0.01,
                 nms_thresh: float = 0.45, detections_per_img: int = 100) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_img = int(detections_per_img)

    # -- contract --------------------------------------------------------------------------
    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        raise NotImplementedError

    def finish(self, boxes: torch.Tensor, scores: torch.Tensor, images: Sequence[torch.Tensor],
               scales: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per-image detections from candidates in resized-input pixels: boxes (B, M, 4)
        and per-class scores (B, M, K); ``scales`` (B, 2) from :func:`resize_batch`."""
        from zoo.models.detection.boxes import postprocess

        out = []
        for i, im in enumerate(images):
            h, w = im.shape[-2:]
            out.append(postprocess(boxes[i] / scales[i].repeat(2), scores[i],
                                   score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                                   max_detections=self.detections_per_img, width=w, height=h))
        return out

    @torch.no_grad()
    def predict(self, batch: Any) -> list[dict[str, torch.Tensor]]:
        return self.detect(detection_images(batch))
