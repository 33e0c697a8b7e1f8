"""Autoregressive decoding shared by the encoder-decoder models (LSTM seq2seq, Transformer):
greedy decoding and beam search.

A model describes one decoder step as ``step(tokens, state) -> (log_probs, state)``:
tokens (N, t) are all tokens emitted so far (starting with ``<bos>``), log_probs (N, V)
score the next one, and ``state`` is whatever the model carries (an LSTM's (h, c), or
the encoder memory of a Transformer). ``reorder(state, index)`` selects rows of a state,
so beam search can keep the survivors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from zoo.data.batches import TokenBatch

StepFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]
ReorderFn = Callable[[Any, torch.Tensor], Any]


@torch.no_grad()
def greedy_decode(step: StepFn, state: Any, batch_size: int, bos_id: int, eos_id: int,
                  pad_id: int, max_len: int, device: torch.device) -> torch.Tensor:
    """Pick the most likely token each step -> (B, L) ids without ``<bos>``; after a row's
    ``<eos>`` it is padded with ``pad_id``."""
    tokens = torch.full((batch_size, 1), bos_id, dtype=torch.int64, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_len):
        log_probs, state = step(tokens, state)
        nxt = log_probs.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return tokens[:, 1:]


@torch.no_grad()
def beam_search(step: StepFn, state: Any, reorder: ReorderFn, bos_id: int, eos_id: int,
                pad_id: int, max_len: int, beam_size: int, device: torch.device,
                length_penalty: float = 0.6) -> torch.Tensor:
    """Beam search for ONE source (``state`` has batch size 1) -> (L,) ids without ``<bos>``.

    Keeps the ``beam_size`` best partial outputs by total log-probability; a finished
    hypothesis is scored by log p / lp(len), lp = ((5 + len) / 6) ** alpha (Wu et al. 2016),
    so longer outputs are not penalised merely for having more factors.
    """
    state = reorder(state, torch.zeros(1, dtype=torch.int64, device=device))
    tokens = torch.full((1, 1), bos_id, dtype=torch.int64, device=device)
    scores = torch.zeros(1, device=device)
    finished: list[tuple[float, torch.Tensor]] = []
    for t in range(max_len):
        log_probs, state = step(tokens, state)                      # (N, V)
        V = log_probs.shape[-1]
        total = (scores[:, None] + log_probs).reshape(-1)           # (N * V,)
        top, idx = total.topk(min(2 * beam_size, total.numel()))
        beam_idx, tok = idx // V, idx % V
        keep_rows, keep_tok, keep_scores = [], [], []
        for s, b, k in zip(top.tolist(), beam_idx.tolist(), tok.tolist()):
            if k == eos_id:
                seq = torch.cat([tokens[b, 1:], tokens.new_tensor([eos_id])])
                finished.append((s / (((5 + len(seq)) / 6) ** length_penalty), seq))
            else:
                keep_rows.append(b)
                keep_tok.append(k)
                keep_scores.append(s)
            if len(keep_rows) == beam_size:
                break
        best_done = max((f[0] for f in finished), default=float("-inf"))
        if not keep_rows:
            break
        # stop when no live beam can still beat the best finished one (scores only fall)
        best_live = keep_scores[0] / (((5 + max_len) / 6) ** length_penalty)
        if len(finished) >= beam_size and best_done >= best_live:
            break
        rows = torch.tensor(keep_rows, device=device)
        tokens = torch.cat([tokens[rows], torch.tensor(keep_tok, device=device)[:, None]], dim=1)
        scores = torch.tensor(keep_scores, device=device)
        state = reorder(state, rows)
    if not finished:  # nothing ended within max_len: return the best live hypothesis
        return tokens[0, 1:]
    return max(finished, key=lambda f: f[0])[1]


def pad_rows(rows: list[torch.Tensor], pad_id: int) -> torch.Tensor:
    n = max(max(len(r) for r in rows), 1)
    out = rows[0].new_full((len(rows), n), pad_id)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


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
