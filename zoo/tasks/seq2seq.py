"""Sequence to sequence (translation): decoded output ids (B, L) without ``<bos>``, padded
after ``<eos>``, for a ``TokenBatch`` (source, target starting with ``<bos>``).

Evaluator: exact match and token accuracy against the target. ``predict.py
input="March 5, 2024" [beam_size=4]`` decodes one source string.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from zoo.data.batches import TokenBatch
from zoo.tasks.base import (
    Option,
    Task,
    encode_input,
    evaluator_spec,
    shape_of,
    write_text,
)


def check_ids(task: Task, predictions: Any, batch_size: int, what: str) -> None:
    ok = (isinstance(predictions, torch.Tensor) and predictions.ndim == 2
          and predictions.shape[0] == batch_size and not predictions.is_floating_point())
    if not ok:
        raise task.fail(f"expected {what} ({batch_size}, L) int64 ids, got {shape_of(predictions)}")


class Seq2SeqTask(Task):
    name = "seq2seq"
    title = "sequence-to-sequence models"
    predict_options: ClassVar[dict[str, Option]] = {
        "input": Option("text", required=True, metavar="TEXT", help="the string to translate"),
        "beam_size": Option("int", 1, "1 = greedy decoding", low=1, high=64),
    }
    predict_writes = "translation.txt"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.language import ExactMatchEvaluator

        evaluator_spec(spec, self.evaluator_keys, self.name)
        return ExactMatchEvaluator(eos_id=model.eos_id, pad_id=model.pad_id, skip=1)

    def check_output(self, predictions: Any, batch: Any) -> None:
        check_ids(self, predictions, len(TokenBatch.of(batch).inputs), "decoded outputs")

    @torch.no_grad()
    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        opt = self.parse_predict(options)
        src = encode_input(run, opt["input"])
        vocab = run.data.vocab
        out = vocab.decode(run.model.translate(src, opt["beam_size"])[0].tolist())
        print(out)
        return write_text(output, "translation.txt", out)
