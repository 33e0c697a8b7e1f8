"""What every detector shares: the evaluator, training targets without crowd regions,
input resizing, pictures for TensorBoard, ``predict.py`` and COCO results files.

Batches are ``(images, targets)``: a list of (3, H, W) float images in [0, 1] at their
own sizes and a list of torchvision target dicts (see ``zoo.data.detection``).
``predict`` returns one ``{"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,) 1..K}``
per image, in that image's own pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from zoo.data.images import IMAGE_SUFFIXES
from zoo.errors import UserError, choices
from zoo.models.base import ZooModel


def training_targets(targets: Sequence[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
    """``boxes`` and ``labels`` of each image without its crowd regions (``iscrowd == 1``
    marks a region to ignore in evaluation, never an object to learn)."""
    out = []
    for t in targets:
        keep = t["iscrowd"] == 0 if "iscrowd" in t else torch.ones(len(t["labels"]), dtype=torch.bool,
                                                                  device=t["labels"].device)
        out.append({"boxes": t["boxes"][keep].reshape(-1, 4).float(), "labels": t["labels"][keep]})
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


def save_predictions(path: str | Path, pairs: Sequence[tuple[list[dict], Any]],
                     meta: dict[str, Any]) -> int:
    """Write a COCO results json (``image_id``, ``category_id``, ``bbox`` [x, y, w, h],
    ``score``) from ``(predictions, batch)`` pairs. Labels map back to the dataset's
    original category ids through ``meta["label_to_cat_id"]`` when the data came from a
    COCO json; otherwise the category id is the label. Returns the number written."""
    from zoo.metrics.detection import write_coco_results

    by_image: dict[int, dict] = {}
    for predictions, batch in pairs:
        for p, t in zip(predictions, batch[1]):
            by_image[int(t["image_id"])] = p
    return write_coco_results(path, by_image, meta.get("label_to_cat_id"))


class Detector(ZooModel):
    """Shared behaviour of the zoo's object detectors (the subclasses name their papers).

    Subclasses implement ``training_step`` and ``detect(images) -> list[dict]``;
    ``predict(batch)`` calls ``detect`` on the batch's images.
    """

    picture_thresh: float = 0.3  # score above which boxes are drawn in pictures

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
        images = batch[0] if isinstance(batch, (tuple, list)) and len(batch) == 2 and \
            isinstance(batch[1], (list, tuple)) else batch
        return self.detect(list(images))

    def build_evaluator(self, meta: dict) -> Any:
        from zoo.metrics.detection import DetectionEvaluator

        return DetectionEvaluator(int(meta.get("num_classes", self.num_classes)),
                                  meta.get("class_names"))

    def save_predictions(self, path: Path, pairs: Sequence[tuple[Any, Any]], meta: dict) -> int:
        """``evaluate.py save_predictions=PATH``: see :func:`save_predictions`."""
        return save_predictions(path, pairs, meta)

    # -- pictures --------------------------------------------------------------------------
    def on_train_start(self, data: Any, run_dir: str) -> None:
        # Only for captions in pictures; nothing a checkpoint needs.
        self.class_names = list(data.meta.get("class_names") or [])

    def log_images(self, batch: Any, predictions: Any, max_images: int = 8) -> dict[str, torch.Tensor]:
        """True boxes (white) and predictions above ``picture_thresh`` (class colours)."""
        from zoo import viz

        class_names = getattr(self, "class_names", None)

        images, targets = batch
        tiles = []
        for im, t, p in list(zip(images, targets, predictions))[:max_images]:
            im = viz.draw_boxes(im, t["boxes"], color=(255, 255, 255))
            keep = p["scores"] >= self.picture_thresh
            tiles.append(viz.draw_boxes(im, p["boxes"][keep], p["labels"][keep], p["scores"][keep],
                                        class_names))
        return {"val/detections": viz.grid(tiles, nrow=4)} if tiles else {}

    # -- predict.py ------------------------------------------------------------------------
    def predict_cli(self, options: dict[str, str], data: Any, output: Path | None) -> None:
        """``predict.py run=DIR source=IMAGE_OR_FOLDER [output=DIR] [json=PATH]
        [score_thresh=0.3]``: detect objects in each image, print them, and write the
        image with labelled boxes to ``output/<name>.png`` and all detections to a json."""
        from zoo import viz
        from zoo.data.detection import decode_image_file

        allowed = {"source", "json", "score_thresh"}
        unknown = set(options) - allowed
        if unknown:
            raise UserError(f"unknown option '{sorted(unknown)[0]}' for a detector; valid options: "
                            f"{choices(allowed | {'output', 'run', 'ckpt', 'device'})}")
        if "source" not in options:
            raise UserError("predict.py needs source=IMAGE_OR_FOLDER for a detector")
        src = Path(options["source"]).expanduser()
        if src.is_dir():
            files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif src.is_file():
            files = [src]
        else:
            raise UserError(f"source {src} is neither an image nor a folder")
        if not files:
            raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {src}")
        try:
            thresh = float(options.get("score_thresh", self.picture_thresh))
        except ValueError:
            raise UserError(f"score_thresh must be a number, got '{options['score_thresh']}'")
        names = list(data.meta.get("class_names") or [])
        mapping = {int(k): int(v) for k, v in (data.meta.get("label_to_cat_id") or {}).items()}
        device = next(self.parameters()).device
        rows = []
        for f in files:
            img = decode_image_file(f).float().div(255).to(device)
            p = self.detect([img])[0]
            keep = p["scores"] >= thresh
            boxes, scores, labels = p["boxes"][keep].cpu(), p["scores"][keep].cpu(), p["labels"][keep].cpu()
            desc = ", ".join(f"{_name(names, c)} {s:.2f}" for c, s in zip(labels.tolist(), scores.tolist()))
            print(f"{f.name}: {len(boxes)} objects" + (f": {desc}" if desc else ""))
            for b, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                rows.append({"file_name": f.name, "category_id": mapping.get(c, c),
                             "category_name": _name(names, c), "score": round(s, 5),
                             "bbox": [round(b[0], 2), round(b[1], 2), round(b[2] - b[0], 2),
                                      round(b[3] - b[1], 2)]})
            if output is not None:
                viz.save_png(viz.draw_boxes(img, boxes, labels, scores, names),
                             Path(output) / f"{f.stem}.png")
        if output is not None:
            print(f"pictures written to {output}")
        if options.get("json"):
            Path(options["json"]).parent.mkdir(parents=True, exist_ok=True)
            Path(options["json"]).write_text(json.dumps(rows, indent=1))
            print(f"detections written to {options['json']}")


def _name(names: Sequence[str], label: int) -> str:
    return names[label - 1] if 0 < label <= len(names) else str(label)
