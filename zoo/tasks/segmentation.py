"""Semantic segmentation: per-pixel logits (B, C, H, W), or class ids (B, H, W), at the
size of the batch's masks.

Evaluator: mIoU, mDice, pixel accuracy, frequency-weighted IoU, IoU and Dice per class
and the IoU of small objects (``evaluator: {ignore_index: 255, small_area: 0.01}``; the
data's ``ignore_index`` otherwise). Pictures: each image beside its true and predicted
masks. ``predict.py run=DIR source=IMAGE_OR_FOLDER output=DIR`` writes each image's
label map (a palette PNG whose indices are the classes) and the image with its mask
overlaid. ``evaluate.py save_predictions=DIR`` writes one label PNG per image, which
``evaluate.py task=segmentation`` scores against a folder of ground-truth PNGs.
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
from zoo.tasks.base import Option, Task, evaluator_spec, model_device, output_dir, shape_of


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
    evaluator_keys: ClassVar[dict[str, str]] = {
        "ignore_index": "the mask value that is not scored (default: the data's, else 255)",
        "small_area": "objects below this fraction of an image's pixels are small (default 0.01)"}
    predict_options: ClassVar[dict[str, Option]] = {
        "source": Option("str", required=True, metavar="IMAGE_OR_FOLDER", help="images to segment"),
        "alpha": Option("float", 0.5, "opacity of the overlaid mask", low=0, high=1),
    }
    predict_writes = "<image>_mask.png (label map), <image>_overlay.png"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.segmentation import SMALL_AREA, SegmentationEvaluator

        opts = evaluator_spec(spec, self.evaluator_keys, self.name)
        ignore = opts.get("ignore_index", meta.get("ignore_index", 255))
        try:
            ignore = int(ignore)
        except (TypeError, ValueError):
            raise UserError(f"evaluator.ignore_index must be a whole number, got {ignore!r}") from None
        try:
            small = float(opts.get("small_area", SMALL_AREA))
        except (TypeError, ValueError):
            small = -1.0
        if not 0 <= small <= 1:
            raise UserError(f"evaluator.small_area must be a fraction in [0, 1], got {opts.get('small_area')!r}")
        num_classes = int(meta.get("num_classes") or model.num_classes)
        return SegmentationEvaluator(num_classes, meta.get("class_names"), ignore, small)

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

    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        """Segment each image of ``source``: print the pixel share of each class found and,
        with ``output``, write ``<stem>_mask.png`` (palette PNG, index = class id, readable
        by ``evaluate.py task=segmentation``) and ``<stem>_overlay.png``."""
        from PIL import Image

        from zoo.data.detection import decode_image_file
        from zoo.data.images import image_files
        from zoo.data.segmentation import voc_palette

        opt = self.parse_predict(options)
        model, meta = run.model, run.data.meta
        files = image_files(opt["source"])
        k = int(meta.get("num_classes") or model.num_classes)
        names = list(meta.get("class_names") or [str(c) for c in range(k)])
        pal = viz.palette(k + 1)[1:]
        device = model_device(model)
        folder = output_dir(output) if output is not None else None
        lut = voc_palette()
        lut[:k] = np.asarray(pal[:k], dtype=np.uint8)  # the PNG's colours are the pictures' colours
        written: list[Path] = []
        for f in files:
            img = decode_image_file(f).float().div(255)
            pred = label_map(model.predict(img[None].to(device)).cpu())[0]
            counts = torch.bincount(pred.flatten(), minlength=k).tolist()
            share = ", ".join(f"{names[c] if c < len(names) else c} {n / pred.numel():.1%}"
                              for c, n in enumerate(counts) if n)
            print(f"{f.name}: {share}")
            if folder is None:
                continue
            png = Image.fromarray(pred.numpy().astype(np.uint8))  # putpalette makes it a "P" image
            png.putpalette(lut.flatten().tolist())
            png.save(folder / f"{f.stem}_mask.png")
            written.append(folder / f"{f.stem}_mask.png")
            masks = torch.stack([pred == c for c in range(k)])
            picture = viz.overlay_masks(img, masks, alpha=opt["alpha"], colors=pal[:k])
            written.append(viz.save_png(picture, folder / f"{f.stem}_overlay.png"))
        return written

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
