"""What the encoder-decoder models (LSTM seq2seq, Transformer) share: translating by
greedy decoding or beam search (the math lives in :mod:`zoo.layers.decoding`, whose
names stay importable from here), and the ``predict.py input=...`` hook.
"""

from __future__ import annotations

import pathlib
from typing import Any

import torch

from zoo.errors import UserError
from zoo.layers.decoding import ReorderFn, StepFn, beam_search, greedy_decode, pad_rows
from zoo.models.sequence.generation import parse_options, text_option

__all__ = ["ReorderFn", "StepFn", "Translator", "beam_search", "greedy_decode", "pad_rows"]


class Translator:
    """Mixin for encoder-decoder models. A model defines ``encode(src) -> state``,
    ``_step(tokens, state) -> (log_probs of the next token, state)`` and
    ``_reorder(state, idx)``, and attributes ``bos_id, eos_id, pad_id, max_len,
    beam_size``; this mixin decodes greedily or by beam search, predicts, scores exact
    match, and serves ``predict.py run=DIR input="March 5, 2024" [beam_size=4]``."""

    @torch.no_grad()
    def translate(self, src: torch.Tensor, beam_size: int = 1) -> torch.Tensor:
        state = self.encode(src)  # type: ignore[attr-defined]
        if beam_size <= 1:
            return greedy_decode(self._step, state, src.shape[0], self.bos_id, self.eos_id,  # type: ignore[attr-defined]
                                 self.pad_id, self.max_len, src.device)  # type: ignore[attr-defined]
        rows = [beam_search(self._step, self._reorder(state, torch.tensor([i], device=src.device)),  # type: ignore[attr-defined]
                            self._reorder, self.bos_id, self.eos_id, self.pad_id, self.max_len,  # type: ignore[attr-defined]
                            beam_size, src.device) for i in range(src.shape[0])]
        return pad_rows(rows, self.pad_id)  # type: ignore[attr-defined]

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self.translate(batch[0], self.beam_size)  # type: ignore[attr-defined]

    def build_evaluator(self, meta: dict) -> Any:
        from zoo.metrics.language import ExactMatchEvaluator

        return ExactMatchEvaluator(eos_id=self.eos_id, pad_id=self.pad_id, skip=1)  # type: ignore[attr-defined]

    @torch.no_grad()
    def predict_cli(self, options: dict[str, str], data: Any,
                    output: pathlib.Path | None = None) -> None:
        opt = parse_options(options, {"input": text_option, "beam_size": int},
                            {"input": None, "beam_size": 1})
        if not opt["input"]:
            raise UserError("pass input=TEXT, the string to translate")
        vocab = getattr(data, "vocab", None)
        if vocab is None:
            raise UserError("this run's data config has no task vocabulary to encode input with")
        device = next(self.parameters()).device  # type: ignore[attr-defined]
        src = torch.tensor([vocab.encode(opt["input"])], dtype=torch.int64, device=device)
        out = vocab.decode(self.translate(src, max(opt["beam_size"], 1))[0].tolist())
        print(out)
        if output is not None:
            pathlib.Path(output).write_text(out + "\n", encoding="utf-8")
