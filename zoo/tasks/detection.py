"""Object detection: one ``{"boxes" (N, 4) xyxy pixels, "scores" (N,), "labels" (N,) int64
in 1..K}`` per image, in that image's own pixels; instance segmentation (Mask R-CNN) adds
``"masks"`` (N, H, W) (or (N, 1, H, W)) at the image's size, binary or probabilities.

Evaluator: COCO mAP (and the VOC protocols), selectable with the ``evaluator:`` node:
``protocols: [coco, voc07, voc12, voc07_devkit]`` and ``iou_types: [bbox]`` (the default
is the model's ``iou_types``: ``[bbox, segm]`` for a model that predicts masks, which
scores boxes and masks together; the mask numbers are prefixed ``mask_``: ``mask_map``,
``mask_map_50``, ...). Pictures: ground truth in white, predictions in one colour per
class with name and score, and a key; with masks, each image twice, the true masks
beside the predicted ones. ``predict.py source=IMAGE_OR_FOLDER`` draws and lists
detections (and writes instance masks); ``evaluate.py save_predictions=PATH`` writes a
COCO results file (with RLE masks); ``evaluate.py task=detection [iou_type=segm]`` scores
COCO files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from zoo import viz
from zoo.data.batches import DetectionBatch
from zoo.errors import UserError
from zoo.tasks.base import Option, Task, as_list, evaluator_spec, model_device, output_dir, shape_of

PICTURE_THRESH = 0.3   # score above which predicted boxes are drawn
TILE = 256             # pictures are drawn at least this large, so captions stay readable
# Prefix of each iou_type's numbers after the first one's in an evaluator group.
GROUP_PREFIX = {"bbox": "box", "segm": "mask", "keypoints": "keypoints"}


def class_name(names: Sequence[str], label: int) -> str:
    return names[label - 1] if 0 < label <= len(names) else str(label)


def save_predictions(path: str | Path, pairs: Sequence[tuple[list[dict], Any]],
                     meta: Mapping[str, Any]) -> int:
    """Write a COCO results json (``image_id``, ``category_id``, ``bbox`` [x, y, w, h],
    ``score``) from ``(predictions, batch)`` pairs. Labels map back to the dataset's
    original category ids through ``meta["label_to_cat_id"]`` when the data came from a
    COCO json; otherwise the category id is the label. Returns the number written."""
    from zoo.metrics.detection import write_coco_results

    by_image: dict[int, dict] = {}
    for predictions, batch in pairs:
        for p, t in zip(predictions, DetectionBatch.of(batch).targets):
            by_image[int(t["image_id"])] = p
    return write_coco_results(path, by_image, meta.get("label_to_cat_id"))


def _upscaled(image: torch.Tensor, min_size: int) -> tuple[torch.Tensor, int]:
    h, w = image.shape[-2:]
    s = max(1, min_size // max(h, w))
    im = image.detach().float().cpu()
    if s > 1:
        im = F.interpolate(im[None], scale_factor=s, mode="bilinear", align_corners=False)[0]
    return im, s


def _overlay(im: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, s: int) -> torch.Tensor:
    """``masks`` (N, H, W) or (N, 1, H, W) in their labels' class colours on ``im`` (upscaled
    ``s`` times)."""
    from zoo.metrics.detection.coco import _binary_masks

    m = _binary_masks(masks.detach().cpu()).bool()
    if len(m) == 0:
        return im
    if s > 1:
        m = m.repeat_interleave(s, 1).repeat_interleave(s, 2)
    pal = viz.palette(int(labels.max()) + 1 if len(labels) else 1)
    return viz.overlay_masks(im, m, alpha=0.45, colors=[pal[int(c)] for c in labels.cpu()])


def draw_detections(image: torch.Tensor, prediction: Mapping[str, torch.Tensor],
                    names: Sequence[str], thresh: float, target: Mapping[str, Any] | None = None,
                    min_size: int = TILE) -> torch.Tensor:
    """One picture: ``image`` upscaled to at least ``min_size`` pixels, the true boxes of
    ``target`` in white, the predictions scoring ``thresh`` or more in their class colour
    captioned "name score" (over their masks, when the prediction has ``masks``)."""
    im, s = _upscaled(image, min_size)
    if target is not None and len(target["boxes"]):
        im = viz.draw_boxes(im, target["boxes"].cpu() * s, color=viz.WHITE, width=1)
    keep = prediction["scores"].cpu() >= thresh
    labels = prediction["labels"].cpu()[keep]
    if "masks" in prediction:
        im = _overlay(im, prediction["masks"].cpu()[keep], labels, s)
    return viz.draw_boxes(im, prediction["boxes"].cpu()[keep] * s, labels,
                          prediction["scores"].cpu()[keep], names, width=2)


def draw_true_masks(image: torch.Tensor, target: Mapping[str, Any], names: Sequence[str],
                    min_size: int = TILE) -> torch.Tensor:
    """The ground truth of an instance-segmentation picture: true masks in their class
    colours, true boxes in white captioned with the class name."""
    im, s = _upscaled(image, min_size)
    labels = target["labels"].cpu()
    if "masks" in target:
        im = _overlay(im, target["masks"], labels, s)
    names_only = [f"{n} (true)" for n in names]
    return viz.draw_boxes(im, target["boxes"].cpu() * s, labels, None, names_only, color=viz.WHITE,
                          width=1)


def save_instance_map(masks: torch.Tensor, scores: torch.Tensor, path: Path) -> Path:
    """(N, H, W) binary masks -> a PNG instance map: 0 background, ``k + 1`` on mask ``k``'s
    pixels, the higher-scoring mask on top where two overlap (8-bit, 16-bit past 255)."""
    import numpy as np
    from PIL import Image

    h, w = masks.shape[-2:]
    ids = np.zeros((h, w), dtype=np.uint16 if len(masks) > 255 else np.uint8)
    m = masks.numpy().astype(bool)
    for k in np.argsort(scores.numpy(), kind="stable"):  # lowest score first, highest last
        ids[m[k]] = k + 1
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids).save(path)
    return path


def detection_key(names: Sequence[str], width: int, thresh: float) -> torch.Tensor:
    """Two lines under a picture: what white and coloured boxes are, and each class's colour."""
    pal = viz.palette(len(names) + 1)
    first = viz.legend([("ground truth", viz.WHITE), (f"prediction (score >= {thresh:.2f})", viz.GREY)],
                       width)
    second = viz.legend([(n, pal[i + 1]) for i, n in enumerate(names)], width)
    return viz.vstack([first, second])


def mask_key(names: Sequence[str], width: int, thresh: float) -> torch.Tensor:
    """Two lines under an instance-segmentation picture: which tile is which, and each
    class's colour (masks and boxes)."""
    pal = viz.palette(len(names) + 1)
    first = viz.legend([("left: true masks, white boxes", viz.WHITE),
                        (f"right: predicted masks (score >= {thresh:.2f})", viz.GREY)], width)
    second = viz.legend([(n, pal[i + 1]) for i, n in enumerate(names)], width)
    return viz.vstack([first, second])


class DetectionTask(Task):
    name = "detection"
    title = "detectors"
    predict_options: ClassVar[dict[str, Option]] = {
        "source": Option("str", required=True, metavar="IMAGE_OR_FOLDER", help="images to detect in"),
        "score_thresh": Option("float", PICTURE_THRESH, "lowest score drawn and listed", low=0, high=1),
        "json": Option("str", None, "also write the detections to this json file", metavar="PATH"),
        "backend": Option("str", "torch", "onnxruntime: run the exported model.onnx",
                          choices=("torch", "onnxruntime")),
        "onnx": Option("str", None, "the .onnx file (default RUN/export/model.onnx)", metavar="PATH"),
    }
    predict_writes = "<image>.png, detections.json (with masks: <image>_instances.png)"
    file_options: ClassVar[dict[str, Option]] = {
        "gt": Option("str", required=True, metavar="instances.json"),
        "predictions": Option("str", required=True, metavar="results.json"),
        "iou_type": Option("str", metavar="bbox|segm|keypoints"),
        "protocol": Option("str", metavar="coco|voc07|voc12|voc07_devkit|all"),
        "sigmas": Option("str", metavar="S1,S2,..."),
        "backend": Option("str", metavar="faster_coco_eval|pycocotools"),
        "output": Option("str", metavar="PATH"),
        "plots": Option("str", choices=("true", "false")),
    }
    evaluator_keys: ClassVar[dict[str, str]] = {"protocols": "coco, voc07, voc12, voc07_devkit (default: the evaluator's)",
                      "iou_types": "bbox, segm, keypoints (default: the model's, [bbox] or [bbox, segm]; "
                                   "the first one's numbers keep their names, segm's others get mask_)",
                      "backend": "faster_coco_eval or pycocotools"}

    # -- evaluation --------------------------------------------------------------------------
    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.detection import IOU_TYPES, PROTOCOLS, DetectionEvaluator
        from zoo.tasks.base import EvaluatorGroup

        opts = evaluator_spec(spec, self.evaluator_keys, self.name)
        kwargs: dict[str, Any] = {"backend": opts["backend"]} if "backend" in opts else {}
        default = list(getattr(model, "iou_types", None) or ["bbox"])
        iou_types = as_list(opts.get("iou_types", default), "iou_types")
        checks = [(iou_types, IOU_TYPES, "iou_types")]
        if "protocols" in opts:  # otherwise the evaluator's own default
            kwargs["protocols"] = as_list(opts["protocols"], "protocols")
            checks.append((kwargs["protocols"], PROTOCOLS, "protocols"))
        for value, valid, key in checks:
            bad = [v for v in value if v not in valid]
            if bad or not value:
                raise UserError(f"evaluator.{key}: '{bad[0] if bad else value}' is not one of "
                                f"{', '.join(valid)}")
        num_classes = int(meta.get("num_classes") or model.num_classes)
        members = {GROUP_PREFIX[t]: DetectionEvaluator(num_classes, meta.get("class_names"),
                                                       iou_type=t, **kwargs)
                   for t in iou_types}
        return next(iter(members.values())) if len(members) == 1 else EvaluatorGroup(members)

    def check_output(self, predictions: Any, batch: Any) -> None:
        n = len(DetectionBatch.of(batch).images)
        if not isinstance(predictions, (list, tuple)) or len(predictions) != n:
            raise self.fail(f"expected a list of {n} dicts (one per image), got {shape_of(predictions)}")
        for i, p in enumerate(predictions):
            if not isinstance(p, Mapping) or not {"boxes", "scores", "labels"} <= set(p):
                raise self.fail(f"image {i}: expected a dict with boxes, scores and labels, got "
                                f"{sorted(p) if isinstance(p, Mapping) else shape_of(p)}")
            boxes, scores, labels = p["boxes"], p["scores"], p["labels"]
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise self.fail(f"image {i}: boxes must be (N, 4) xyxy, got {tuple(boxes.shape)}")
            if scores.shape != (len(boxes),) or labels.shape != (len(boxes),):
                raise self.fail(f"image {i}: {len(boxes)} boxes with scores {tuple(scores.shape)} "
                                f"and labels {tuple(labels.shape)}; both must be ({len(boxes)},)")
            if labels.dtype != torch.int64:
                raise self.fail(f"image {i}: labels must be int64 class ids 1..K, got {labels.dtype}")
            if "masks" in p:
                masks, size = p["masks"], tuple(DetectionBatch.of(batch).images[i].shape[-2:])
                shape = tuple(masks.shape)
                if not (masks.ndim in (3, 4) and shape[0] == len(boxes) and shape[-2:] == size
                        and (masks.ndim == 3 or shape[1] == 1)):
                    raise self.fail(f"image {i}: masks must be ({len(boxes)}, {size[0]}, {size[1]}) "
                                    f"or ({len(boxes)}, 1, {size[0]}, {size[1]}), one per box at the "
                                    f"image's size, got {shape}")

    # -- pictures ----------------------------------------------------------------------------
    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any],
               max_images: int = 8) -> dict[str, torch.Tensor]:
        """True boxes (white) and predictions above ``PICTURE_THRESH`` (class colours)."""
        b = DetectionBatch.of(batch)
        names = list(meta.get("class_names") or [])
        if not names:
            k = int(meta.get("num_classes") or 0)
            names = [str(i) for i in range(1, k + 1)]
        shown = list(zip(b.images, b.targets, predictions))[:max_images]
        if shown and all("masks" in p for _, _, p in shown):
            # Instance masks: the truth and the prediction of each image side by side.
            tiles = []
            for im, t, p in shown:
                tiles += [draw_true_masks(im, t, names), draw_detections(im, p, names, PICTURE_THRESH)]
            body = viz.grid(tiles, nrow=4)
            return {"val/instances": viz.vstack([body, mask_key(names, body.shape[-1], PICTURE_THRESH)])}
        tiles = [draw_detections(im, p, names, PICTURE_THRESH, t) for im, t, p in shown]
        if not tiles:
            return {}
        body = viz.grid(tiles, nrow=4)
        return {"val/detections": viz.vstack([body, detection_key(names, body.shape[-1], PICTURE_THRESH)])}

    # -- predict.py --------------------------------------------------------------------------
    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        """Detect objects in each image of ``source``, print them, and with ``output``
        write each image with labelled boxes to ``output/<name>.png`` and every detection
        to ``output/detections.json`` (and to ``json=PATH`` when given). A model that
        predicts masks also gets them overlaid, each detection's COCO RLE
        ``segmentation`` and ``instance`` number in the json, and
        ``output/<name>_instances.png``: an instance map, 0 background and ``instance``
        on each detection's pixels (the higher score wins where masks overlap)."""
        from zoo.data.detection import decode_image_file
        from zoo.data.images import image_files
        from zoo.export.runtime import predictor

        opt = self.parse_predict(options)
        model, meta = predictor(run, opt), run.data.meta
        files = image_files(opt["source"])
        thresh = opt["score_thresh"]
        names = list(meta.get("class_names") or [])
        mapping = {int(k): int(v) for k, v in (meta.get("label_to_cat_id") or {}).items()}
        device = model_device(model)
        folder = output_dir(output) if output is not None else None
        rows, written = [], []
        for f in files:
            img = decode_image_file(f).float().div(255).to(device)
            p = model.predict([img])[0]
            keep = p["scores"] >= thresh
            boxes, scores, labels = p["boxes"][keep].cpu(), p["scores"][keep].cpu(), p["labels"][keep].cpu()
            found = {"boxes": boxes, "scores": scores, "labels": labels}
            rles: list[dict] | None = None
            if "masks" in p:
                from zoo.metrics.detection.coco import _binary_masks, _rle_encode

                found["masks"] = _binary_masks(p["masks"][keep].cpu())
                rles = _rle_encode(found["masks"].numpy())
            desc = ", ".join(f"{class_name(names, c)} {s:.2f}" for c, s in zip(labels.tolist(), scores.tolist()))
            print(f"{f.name}: {len(boxes)} objects" + (f": {desc}" if desc else ""))
            for k, (b, s, c) in enumerate(zip(boxes.tolist(), scores.tolist(), labels.tolist())):
                row = {"file_name": f.name, "category_id": mapping.get(c, c),
                       "category_name": class_name(names, c), "score": round(s, 5),
                       "bbox": [round(b[0], 2), round(b[1], 2), round(b[2] - b[0], 2),
                                round(b[3] - b[1], 2)]}
                if rles is not None:
                    row.update(instance=k + 1, segmentation=rles[k])
                rows.append(row)
            if folder is not None:
                picture = draw_detections(img, found, names, thresh)
                written.append(viz.save_png(picture, folder / f"{f.stem}.png"))
                if "masks" in found:
                    written.append(save_instance_map(found["masks"], found["scores"],
                                                     folder / f"{f.stem}_instances.png"))
        targets = [folder / "detections.json"] if folder is not None else []
        if opt["json"]:
            targets.append(Path(opt["json"]))
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows, indent=1))
            written.append(path)
        return written

    # -- files -------------------------------------------------------------------------------
    def save_predictions(self, path: Path, pairs: Sequence[tuple[Any, Any]],
                         meta: Mapping[str, Any]) -> int:
        return save_predictions(path, pairs, meta)

    def score_files(self, options: Mapping[str, str]) -> tuple[dict[str, Any], Any]:
        from zoo.metrics.files import _detection

        return _detection(dict(options))
