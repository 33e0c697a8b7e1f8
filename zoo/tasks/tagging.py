"""Per-step tagging (synchronous many-to-many): tag ids (B, T) for a ``TokenBatch`` of
(ids, tags) with -100 on unscored steps.

Evaluator: exact match of whole tag sequences and per-step accuracy. ``predict.py
input=0110`` prints the tag of each input symbol.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from zoo.data.batches import TokenBatch
from zoo.errors import UserError
from zoo.tasks.base import (
    Option,
    Task,
    encode_input,
    evaluator_spec,
    shape_of,
    write_text,
)


class TaggingTask(Task):
    name = "tagging"
    title = "taggers"
    predict_options: ClassVar[dict[str, Option]] = {"input": Option("text", required=True, metavar="TEXT", help="symbols to tag")}
    predict_writes = "tags.txt"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.language import ExactMatchEvaluator

        evaluator_spec(spec, self.evaluator_keys, self.name)
        return ExactMatchEvaluator(eos_id=None, pad_id=-100, skip=0)

    def check_output(self, predictions: Any, batch: Any) -> None:
        targets = TokenBatch.of(batch).targets
        ok = (isinstance(predictions, torch.Tensor) and not predictions.is_floating_point()
              and predictions.shape == targets.shape)
        if not ok:
            raise self.fail(f"expected one tag id per step {tuple(targets.shape)}, got {shape_of(predictions)}")

    @torch.no_grad()
    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        opt = self.parse_predict(options)
        ids = encode_input(run, opt["input"])
        vocab = run.data.vocab
        if ids.numel() == 0:
            raise UserError("input= holds no symbol to tag")
        tags = run.model.predict(TokenBatch(ids, torch.zeros_like(ids)))[0].tolist()
        text = " ".join(f"{s}:{t}" for s, t in zip(vocab.split(opt["input"]), tags))
        print(text)
        return write_text(output, "tags.txt", text)
