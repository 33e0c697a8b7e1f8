"""What an exported graph computes, per kind of model, and the same thing in PyTorch.

Three kinds (``kind_of``):

- ``tensor``: one tensor in, one tensor out: a classifier's (B, C) logits, a segmenter's
  (B, C, H, W) per-pixel logits (any model whose task is ``segmentation``), a language
  model's (B, T, V) next-token logits. The graph is ``model.predict(x)``.
- ``dense_detector`` (YOLOv1, YOLOv2): images already resized to ``image_size`` (B, 3,
  S, S) in [0, 1] -> ``boxes`` (B, M, 4) xyxy in resized pixels and per-class
  ``scores`` (B, M, K), every candidate before thresholding and NMS. Post-processing
  (score threshold, per-class NMS, rescaling to each image, clipping) is data-dependent
  and stays outside the graph: :func:`finish_dense` does it exactly as the detector's
  own ``finish`` does.
- ``torchvision_detector`` (SSD, Faster R-CNN, both torchvision models inside the zoo's
  wrappers): one image (3, H, W) in [0, 1] -> final ``boxes`` (N, 4) in that image's
  pixels, ``scores`` (N,), ``labels`` (N,) 1..K: torchvision's resize, normalisation,
  anchors, proposals and NMS are in the graph.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import UserError

TENSOR_TASKS = ("classification", "segmentation", "language_modelling")


def kind_of(model: nn.Module) -> str:
    from zoo.models.detection.faster_rcnn import FasterRCNN
    from zoo.models.detection.ssd import SSD
    from zoo.models.detection.yolov1 import YOLOv1
    from zoo.models.detection.yolov2 import YOLOv2

    task = getattr(model, "task", "")
    if isinstance(model, (YOLOv1, YOLOv2)):
        return "dense_detector"
    if isinstance(model, (SSD, FasterRCNN)):
        return "torchvision_detector"
    if task in TENSOR_TASKS:
        return "tensor"
    raise UserError(f"{type(model).__name__} (task {task or 'none'}) cannot be exported to a "
                    f"graph; exportable: classifiers, segmenters, language models, YOLOv1, "
                    f"YOLOv2, SSD, Faster R-CNN (its weights: format=safetensors)")


class TensorGraph(nn.Module):
    """x -> ``model.predict(x)``, the task's standard output (a language model's ids go
    in as the inputs of a ``TokenBatch``, which is what its ``predict`` reads)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.tokens = getattr(model, "task", "") == "language_modelling"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            from zoo.data.batches import TokenBatch

            return self.model.predict(TokenBatch(x, x))
        return self.model.predict(x)


class DenseCandidates(nn.Module):
    """(B, 3, S, S) resized images -> boxes (B, M, 4) xyxy in resized pixels, scores
    (B, M, K): what the YOLO detectors' ``detect`` computes before ``finish``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from zoo.models.detection.yolov1 import YOLOv1

        self.model, self.v1 = model, isinstance(model, YOLOv1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        n, size = x.shape[0], m.image_size
        if self.v1:
            from zoo.models.detection.yolov1 import yolov1_decode

            pred = m(x)                                          # (N, S, S, 5B + C)
            s, nb = m.grid_size, m.num_boxes
            box_p = pred[..., :5 * nb].reshape(n, s, s, nb, 5)
            boxes = yolov1_decode(box_p[..., :4], size).reshape(n, -1, 4)
            scores = (box_p[..., 4:5] * pred[..., None, 5 * nb:]).reshape(n, -1, m.num_classes)
            return boxes, scores
        raw = m(x)                                               # (B, A, S, S, 5 + K)
        boxes = m.decode_boxes(raw, size).reshape(n, -1, 4)
        scores = (raw[..., 4:5].sigmoid() * raw[..., 5:].softmax(-1)).reshape(n, -1, m.num_classes)
        return boxes, scores


def graph_of(model: nn.Module, kind: str) -> nn.Module:
    if kind == "tensor":
        return TensorGraph(model).eval()
    if kind == "dense_detector":
        return DenseCandidates(model).eval()
    return model.net.eval()  # torchvision's detector: list of images -> list of dicts


def finish_dense(boxes: torch.Tensor, scores: torch.Tensor, sizes: list[tuple[int, int]],
                 scales: torch.Tensor, meta: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    """Candidates from a ``dense_detector`` graph -> per-image detections in each image's
    pixels (``Detector.finish``): ``sizes`` (H, W) per image, ``scales`` (B, 2)."""
    from zoo.models.detection.boxes import postprocess

    out = []
    for i, (h, w) in enumerate(sizes):
        out.append(postprocess(boxes[i] / scales[i].repeat(2), scores[i],
                               score_thresh=float(meta["score_thresh"]),
                               nms_thresh=float(meta["nms_thresh"]),
                               max_detections=int(meta["detections_per_img"]), width=w, height=h))
    return out


def detector_meta(model: nn.Module) -> dict[str, Any]:
    return {"image_size": int(model.image_size), "score_thresh": float(model.score_thresh),
            "nms_thresh": float(model.nms_thresh),
            "detections_per_img": int(model.detections_per_img),
            "num_classes": int(model.num_classes)}
