"""Semantic segmentation: per-pixel logits (B, C, H, W), or class ids (B, H, W), at the
size of the batch's masks.

Evaluator: mIoU, mDice, pixel accuracy and frequency-weighted IoU (``evaluator:
{ignore_index: 255}``; the data's ``ignore_index`` otherwise). Pictures: each image
beside its true and predicted masks. ``evaluate.py save_predictions=DIR`` writes one
label PNG per image, which ``evaluate.py task=segmentation`` scores against a folder of
ground-truth PNGs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from zoo import viz
from zoo.data.batches import SegmentationBatch
from zoo.errors import UserError
from zoo.tasks.base import Option, Task, evaluator_spec, output_dir, shape_of


def label_map(predictions: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) logits (C = 1: one binary logit) or (B, H, W) ids -> (B, H, W) int64."""
    if predictions.ndim == 4:
        return (predictions[:, 0] > 0).long() if predictions.shape[1] == 1 else predictions.argmax(1)
    return predictions.long()


class SegmentationTask(Task):
    name = "segmentation"
    title = "segmenters"
    file_options: ClassVar[dict[str, Option]] = {
        "gt": Option("str", required=True, metavar="DIR_OF_PNG"),
        "predictions": Option("str", required=True, metavar="DIR_OF_PNG"),
        "num_classes": Option("str", required=True, metavar="N"),
        "ignore_index": Option("str", metavar="255"),
        "class_names": Option("str", metavar="a,b,..."),
        "output": Option("str", metavar="PATH"),
    }
    evaluator_keys: ClassVar[dict[str, str]] = {"ignore_index": "the mask value that is not scored (default: the data's, else 255)"}

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.segmentation import SegmentationEvaluator

        opts = evaluator_spec(spec, self.evaluator_keys, self.name)
        ignore = opts.get("ignore_index", meta.get("ignore_index", 255))
        try:
            ignore = int(ignore)
        except (TypeError, ValueError):
            raise UserError(f"evaluator.ignore_index must be a whole number, got {ignore!r}") from None
        num_classes = int(meta.get("num_classes") or model.num_classes)
        return SegmentationEvaluator(num_classes, meta.get("class_names"), ignore)

    def check_output(self, predictions: Any, batch: Any) -> None:
        masks = SegmentationBatch.of(batch).masks
        b, h, w = masks.shape[0], masks.shape[-2], masks.shape[-1]
        if not isinstance(predictions, torch.Tensor):
            raise self.fail(f"expected per-pixel logits ({b}, C, {h}, {w}), got {shape_of(predictions)}")
        if predictions.ndim == 4 and predictions.is_floating_point():
            ok = predictions.shape[0] == b and tuple(predictions.shape[-2:]) == (h, w)
        elif predictions.ndim == 3 and not predictions.is_floating_point():
            ok = tuple(predictions.shape) == (b, h, w)
        else:
            ok = False
        if not ok:
            raise self.fail(f"expected per-pixel logits ({b}, C, {h}, {w}) or class ids ({b}, {h}, {w}) "
                            f"at the masks' size, got {shape_of(predictions)}")

    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any],
               max_images: int = 4) -> dict[str, torch.Tensor]:
        b = SegmentationBatch.of(batch)
        pred = label_map(predictions.detach().cpu())
        k = int(meta.get("num_classes") or int(pred.max()) + 1)
        pal = viz.palette(k + 1)[1:]  # class c in colour pal[c]; background (0) is shown too
        ignore = int(meta.get("ignore_index", 255))
        rows = []
        for i in range(min(max_images, len(pred))):
            image = b.images[i].detach().float().cpu()[:3]
            truth, guess = b.masks[i].detach().cpu().long(), pred[i]
            s = max(1, 128 // max(image.shape[-2:]))  # small images are shown larger
            if s > 1:
                image = image.repeat_interleave(s, -1).repeat_interleave(s, -2)
                truth = truth.repeat_interleave(s, -1).repeat_interleave(s, -2)
                guess = guess.repeat_interleave(s, -1).repeat_interleave(s, -2)
            shown = []
            for m in (truth, guess):
                masks = torch.stack([m == c for c in range(k)])  # (K, H, W), ignored pixels in none
                masks &= (m != ignore)[None]
                shown.append(viz.overlay_masks(image, masks, alpha=0.6, colors=pal))
            rows.append(viz.hstack([viz.to_uint8(image).float() / 255, *shown]))
        body = viz.vstack(rows)
        names = list(meta.get("class_names") or [str(c) for c in range(k)])
        key = viz.vstack([viz.text_block([("image | ground truth | prediction", viz.WHITE)], body.shape[-1]),
                          viz.legend([(n, pal[c]) for c, n in enumerate(names[:k])], body.shape[-1])])
        return {"val/segmentation": viz.vstack([body, key])}

    def save_predictions(self, path: Path, pairs: Sequence[tuple[Any, Any]],
                         meta: Mapping[str, Any]) -> int:
        """One single-channel label PNG per image, ``<path>/<n:06d>.png`` in split order."""
        from PIL import Image

        folder = output_dir(Path(path))
        n = 0
        for predictions, _ in pairs:
            for m in label_map(predictions.detach().cpu()):
                if m.numel() and int(m.max()) > 255:
                    raise UserError("label PNGs hold class ids up to 255")
                Image.fromarray(m.numpy().astype(np.uint8)).save(folder / f"{n:06d}.png")
                n += 1
        return n

    def score_files(self, options: Mapping[str, str]) -> tuple[dict[str, Any], Any]:
        from zoo.metrics.files import _segmentation

        return _segmentation(dict(options))
