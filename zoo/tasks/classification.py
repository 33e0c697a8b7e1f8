"""Classification: (B, C) logits (or (B, 1) for a binary sigmoid model) per sample.

Evaluator: accuracy, top-k, per-class precision/recall/F1 and the confusion matrix
(``evaluator.topk=[5]`` picks the k's). Pictures: a grid of the inputs, each framed
green (right) or red (wrong) with the predicted and the true class named under it.
``predict.py images=a.png,b.png [topk=3]`` prints the top classes of each image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from zoo import viz
from zoo.data.batches import inputs_of, labels_of
from zoo.errors import UserError
from zoo.tasks.base import Option, Task, as_list, evaluator_spec, model_device, shape_of, write_text


def class_names(meta: Mapping[str, Any], num_classes: int) -> list[str]:
    names = list(meta.get("class_names") or [])
    return names if len(names) == num_classes else [str(i) for i in range(num_classes)]


def hard_labels(logits: torch.Tensor) -> torch.Tensor:
    """(B, C) logits -> (B,) class ids; one logit means P(class 1) = sigmoid(logit)."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)


def prediction_grid(images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
                    max_images: int = 16, cell: int = 64,
                    names: Sequence[str] | None = None) -> torch.Tensor:
    """(3, H, W) picture of up to 16 inputs, 8 per row: each upscaled to ``cell`` pixels,
    framed green when the prediction is right and red when wrong, with the predicted
    class ("pred") and the true one ("true") written under it, and a key on top."""
    n = min(max_images, len(images))
    x = images[:n].detach().float().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = x[:, :3]
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp(min=1e-8)  # per image to [0, 1]
    x = F.interpolate(x, size=(cell - 4, cell - 4), mode="nearest")
    logits = logits[:n].detach().float().cpu()
    pred = hard_labels(logits)
    truth = labels[:n].detach().cpu().long()
    right = pred == truth
    k = max(logits.shape[1], 2)
    names = list(names) if names is not None and len(names) >= k else [str(i) for i in range(k)]
    size = 10 if cell >= 48 else 8
    tiles = []
    for i in range(n):
        colour = viz.GREEN if right[i] else viz.RED
        tile = torch.tensor(colour, dtype=torch.float32)[:, None, None].expand(3, cell, cell).clone() / 255
        tile[:, 2:-2, 2:-2] = x[i]
        caption = viz.text_block([(f"pred {names[int(pred[i])]}", colour),
                                  (f"true {names[int(truth[i])]}", viz.WHITE)], cell, size=size, pad=1)
        tiles.append(torch.cat([tile, caption], dim=1))
    cols = min(n, 8)
    rows = [viz.hstack(tiles[r:r + cols]) for r in range(0, n, cols)]
    body = viz.vstack(rows)
    wrong = int((~right).sum())
    key = viz.legend([(f"right ({n - wrong})", viz.GREEN), (f"wrong ({wrong})", viz.RED)],
                     body.shape[-1], size=size)
    return viz.vstack([body, key])


class ClassificationTask(Task):
    name = "classification"
    title = "classifiers"
    predict_options: ClassVar[dict[str, Option]] = {
        "images": Option("str", required=True, metavar="PATH[,PATH...]",
                         help="images to classify, read as the data config reads its images"),
        "topk": Option("int", 3, "how many classes to print per image", low=1, metavar="K"),
        "backend": Option("str", "torch", "onnxruntime: run the exported model.onnx",
                          choices=("torch", "onnxruntime")),
        "onnx": Option("str", None, "the .onnx file (default RUN/export/model.onnx)", metavar="PATH"),
    }
    predict_writes = "predictions.txt"
    evaluator_keys: ClassVar[dict[str, str]] = {"topk": "the k's of top-k accuracy (default [5])"}

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.classification import ClassificationEvaluator

        opts = evaluator_spec(spec, self.evaluator_keys, self.name)
        num_classes = int(meta.get("num_classes") or model.num_classes)
        topk: Sequence[int] = (5,)
        if "topk" in opts:
            try:
                topk = tuple(int(k) for k in as_list(opts["topk"], "topk"))
            except ValueError:
                raise UserError(f"evaluator.topk must list whole numbers, got {opts['topk']}") from None
        return ClassificationEvaluator(num_classes, meta.get("class_names"), topk=topk)

    def check_output(self, predictions: Any, batch: Any) -> None:
        n = len(labels_of(batch))
        if not isinstance(predictions, torch.Tensor) or predictions.ndim != 2:
            raise self.fail(f"expected (B, C) logits (or (B, 1) for a binary model), got "
                            f"{shape_of(predictions)}")
        if predictions.shape[0] != n:
            raise self.fail(f"{predictions.shape[0]} rows of logits for a batch of {n}")
        if not predictions.is_floating_point():
            raise self.fail(f"logits must be floating point, got {predictions.dtype}")

    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if isinstance(batch, Mapping):  # token dicts: nothing to look at
            return {}
        x = inputs_of(batch)
        if x.ndim != 4:  # tabular inputs and token ids have no picture
            return {}
        k = max(int(predictions.shape[1]), 2)
        return {"predictions": prediction_grid(x, labels_of(batch), predictions,
                                               names=class_names(meta, int(meta.get("num_classes") or k)))}

    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        """Print the top classes of each image, read as the data config reads its images
        (channels, image_size); with ``output`` also write them to DIR/predictions.txt."""
        from zoo.data.vision import load_image
        from zoo.export.runtime import predictor

        opt = self.parse_predict(options)
        model, meta = predictor(run, opt), run.data.meta
        if not meta.get("image_size") or not meta.get("channels"):
            raise UserError("predict.py images= needs a model trained on images; this run's data "
                            "has no image_size/channels (tabular or token data)")
        names = class_names(meta, int(meta.get("num_classes") or run.model.num_classes))
        device = model_device(model)
        lines = []
        for path in opt["images"].split(","):
            p = Path(path)
            if not p.is_file():
                raise UserError(f"image {p} does not exist")
            x = load_image(p, int(meta["channels"]), int(meta["image_size"])).float() / 255.0
            logits = model.predict(x[None].to(device))[0]
            probs = (torch.sigmoid(torch.cat([-logits, logits])) if logits.numel() == 1
                     else logits.softmax(0))
            top = probs.topk(min(opt["topk"], len(probs)))
            ranked = ", ".join(f"{names[i] if i < len(names) else i} {v:.3f}"
                               for v, i in zip(top.values.tolist(), top.indices.tolist()))
            lines.append(f"{p}: {ranked}")
        text = "\n".join(lines)
        print(text)
        return write_text(output, "predictions.txt", text)
