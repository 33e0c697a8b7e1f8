"""What the encoder-decoder models (LSTM seq2seq, Transformer) share: translating by
greedy decoding or beam search (the math lives in :mod:`zoo.layers.decoding`, whose
names stay importable from here).
"""

from __future__ import annotations

from typing import Any

import torch

from zoo.data.batches import TokenBatch
from zoo.layers.decoding import ReorderFn, StepFn, beam_search, greedy_decode, pad_rows

__all__ = ["ReorderFn", "StepFn", "Translator", "beam_search", "greedy_decode", "pad_rows"]


class Translator:
    """Mixin for encoder-decoder models. A model defines ``encode(src) -> state``,
    ``_step(tokens, state) -> (log_probs of the next token, state)`` and
    ``_reorder(state, idx)``, and attributes ``bos_id, eos_id, pad_id, max_len,
    beam_size``; this mixin decodes greedily or by beam search and predicts (the
    seq2seq task scores exact match and serves ``predict.py input="March 5, 2024"``)."""

    task = "seq2seq"

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
        return self.translate(TokenBatch.of(batch).inputs, self.beam_size)  # type: ignore[attr-defined]
