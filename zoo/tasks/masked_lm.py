"""Masked language modelling with next-sentence prediction (BERT pre-training):
``(mlm_logits (B, T, V), nsp_logits (B, 2))`` for a dict batch (``input_ids``,
``segment_ids``, ``mlm_labels``, ``nsp_label``).

Evaluator: masked-token loss/perplexity/accuracy and NSP accuracy. ``predict.py
text="The assert state_____"`` fills every ``_`` (``mask=`` picks another character).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from zoo.errors import UserError
from zoo.tasks.base import Option, Task, evaluator_spec, model_device, shape_of, write_text
from zoo.tasks.language_modelling import resolve_tokenizer

CLS_ID, SEP_ID, MASK_ID, NUM_SPECIALS = 2, 3, 4, 5  # zoo.data.text.SPECIALS


class MaskedLMTask(Task):
    name = "masked_lm"
    title = "masked language models"
    predict_options: ClassVar[dict[str, Option]] = {
        "text": Option("text", required=True, metavar="TEXT_WITH___",
                       help="text with one placeholder character per token to fill in"),
        "mask": Option("str", "_", "the placeholder character", metavar="CHAR"),
    }
    predict_writes = "filled.txt"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.language import MaskedLMEvaluator

        evaluator_spec(spec, self.evaluator_keys, self.name)
        return MaskedLMEvaluator()

    def check_output(self, predictions: Any, batch: Any) -> None:
        b, t = batch["input_ids"].shape
        ok = (isinstance(predictions, (tuple, list)) and len(predictions) == 2
              and isinstance(predictions[0], torch.Tensor) and predictions[0].ndim == 3
              and predictions[0].shape[:2] == (b, t)
              and isinstance(predictions[1], torch.Tensor) and predictions[1].shape == (b, 2))
        if not ok:
            raise self.fail(f"expected (mlm_logits ({b}, {t}, V), nsp_logits ({b}, 2)), got "
                            f"{shape_of(predictions)}")

    @torch.no_grad()
    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        opt = self.parse_predict(options)
        if len(opt["mask"]) != 1:
            raise UserError(f"mask= must be one character, got '{opt['mask']}'")
        model = run.model
        tok = resolve_tokenizer(model, run.data)
        if getattr(tok, "kind", "char") != "char":
            raise UserError("fill-in needs a character tokenizer (one placeholder = one token)")
        parts = opt["text"].split(opt["mask"])
        if len(parts) == 1:
            raise UserError(f"text= has no '{opt['mask']}' to fill in")
        ids: list[int] = []
        for k, part in enumerate(parts):
            ids += tok.encode(part) + ([MASK_ID] if k < len(parts) - 1 else [])
        max_len = model.max_positions()
        if len(ids) + 2 > max_len:
            raise UserError(f"text too long: {len(ids)} tokens, at most {max_len - 2}")
        x = torch.tensor([[CLS_ID] + ids + [SEP_ID]], device=model_device(model))
        mlm, _ = model.predict({"input_ids": x, "segment_ids": torch.zeros_like(x)})
        logits = mlm[0, 1:-1].clone()
        logits[:, :NUM_SPECIALS] = float("-inf")                 # never fill in a special token
        filled = torch.where(x[0, 1:-1] == MASK_ID, logits.argmax(-1), x[0, 1:-1])
        text = tok.decode(filled.tolist())
        print(text)
        return write_text(output, "filled.txt", text)
