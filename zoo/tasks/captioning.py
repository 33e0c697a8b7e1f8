"""Image captioning: greedy captions (B, L) as ids without ``<bos>``, padded after
``<eos>``, for a ``CaptionBatch`` (images, captions).

Evaluator: exact match and token accuracy against the true caption. Pictures: each
image with the generated caption (green when it equals the true one, red when not) and
the true caption. ``predict.py split=test index=0 count=5`` captions scenes of a split
and prints them beside the true captions (and draws them into output=DIR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from zoo import viz
from zoo.data.batches import CaptionBatch
from zoo.errors import UserError
from zoo.tasks.base import Option, Task, evaluator_spec, model_device, output_dir, write_text
from zoo.tasks.seq2seq import check_ids

PAD, BOS, EOS, NUM_SPECIALS = 0, 1, 2, 4  # zoo.data.seq_tasks.TASK_SPECIALS


def decode_words(ids: Sequence[int], itos: Sequence[str]) -> str:
    """Word ids -> text, up to the first ``<eos>``, specials left out."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if NUM_SPECIALS <= i < len(itos):
            out.append(itos[i])
    return " ".join(out)


def caption_picture(images: torch.Tensor, generated: Sequence[str], truth: Sequence[str],
                    image_px: int = 96, text_px: int = 360) -> torch.Tensor:
    """(3, H, W): one row per image, the image (upscaled to ``image_px``) beside its
    generated caption (green if it equals the true one, else red) and the true caption."""
    rows = []
    for im, gen, true in zip(images, generated, truth):
        x = im.detach().float().cpu()[:3].clamp(0, 1)
        x = F.interpolate(x[None], size=(image_px, image_px), mode="nearest")[0]
        colour = viz.GREEN if gen == true else viz.RED
        text = viz.text_block([("generated:", viz.GREY), (gen or "(empty)", colour),
                               ("true:", viz.GREY), (true, viz.WHITE)], text_px, size=12, pad=4)
        rows.append(viz.hstack([x, text]))
        rows.append(torch.zeros(3, 2, image_px + text_px))  # a thin gap between rows
    return viz.vstack(rows[:-1])


class CaptioningTask(Task):
    name = "captioning"
    title = "captioning models"
    predict_options: ClassVar[dict[str, Option]] = {
        "split": Option("str", "test", "which split's scenes", metavar="SPLIT"),
        "index": Option("int", 0, "first scene", low=0),
        "count": Option("int", 5, "how many scenes", low=1, high=1000),
    }
    predict_writes = "captions.txt, captions.png"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.language import ExactMatchEvaluator

        evaluator_spec(spec, self.evaluator_keys, self.name)
        return ExactMatchEvaluator(eos_id=model.eos_id, pad_id=model.pad_id, skip=1)

    def check_output(self, predictions: Any, batch: Any) -> None:
        check_ids(self, predictions, len(CaptionBatch.of(batch).images), "captions")

    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any],
               max_images: int = 8) -> dict[str, torch.Tensor]:
        b = CaptionBatch.of(batch)
        itos = list(meta.get("vocab") or [])
        n = min(max_images, len(b.images))
        gen = [decode_words(p, itos) for p in predictions[:n].tolist()]
        true = [decode_words(c[1:], itos) for c in b.captions[:n].tolist()]
        return {"captions": caption_picture(b.images[:n], gen, true)}

    @torch.no_grad()
    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        opt = self.parse_predict(options)
        data, model = run.data, run.model
        if opt["split"] not in data.splits:
            raise UserError(f"unknown split '{opt['split']}'; valid splits: {', '.join(data.splits)}")
        ds = data.dataset(opt["split"])
        if not 0 <= opt["index"] < len(ds):
            raise UserError(f"index must be in 0..{len(ds) - 1}")
        idx = range(opt["index"], min(opt["index"] + opt["count"], len(ds)))
        images = torch.stack([ds[i][0] for i in idx]).to(model_device(model))
        pred = model.caption(images)
        itos = list(data.meta.get("vocab") or [])
        gen = [decode_words(p, itos) for p in pred.tolist()]
        true = [decode_words(ds[i][1][1:].tolist(), itos) for i in idx]
        lines = [f"{i}: {g}   (true: {t})" for i, g, t in zip(idx, gen, true)]
        text = "\n".join(lines)
        print(text)
        written = write_text(output, "captions.txt", text)
        if output is not None:
            written.append(viz.save_png(caption_picture(images, gen, true), output_dir(output) / "captions.png"))
        return written
