"""Autoregressive decoding: drawing the next token (temperature, top-k, nucleus/top-p),
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

StepFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]
ReorderFn = Callable[[Any, torch.Tensor], Any]


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Draw one token id per row from logits (B, V); returns (B,) int64.

    temperature 0 means greedy (argmax). top-k keeps the k most likely tokens; top-p keeps
    the smallest set whose probability reaches p (Holtzman et al. 2020), always at least
    the most likely token.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token once the mass before it already reaches p (the first always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


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


def _length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(len) = ((5 + len) / 6) ** alpha (Wu et al. 2016)."""
    return ((5 + length) / 6) ** alpha


@torch.no_grad()
def beam_search(step: StepFn, state: Any, reorder: ReorderFn, bos_id: int, eos_id: int,
                pad_id: int, max_len: int, beam_size: int, device: torch.device,
                length_penalty: float = 0.6) -> torch.Tensor:
    """Beam search for ONE source (``state`` has batch size 1) -> (L,) ids without ``<bos>``.

    Keeps the ``beam_size`` best partial outputs by total log-probability; a finished
    hypothesis is scored by log p / lp(len), so longer outputs are not penalised merely
    for having more factors. Candidates are read best first until ``beam_size`` live ones
    are kept; the endings read on the way finish. So with ``beam_size=1`` and
    ``length_penalty=0`` the search is greedy decoding exactly.
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
                finished.append((s / _length_penalty(len(seq), length_penalty), seq))
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
        best_live = keep_scores[0] / _length_penalty(max_len, length_penalty)
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
    """1-D id tensors -> (len(rows), longest) right-padded with ``pad_id``."""
    n = max(max(len(r) for r in rows), 1)
    out = rows[0].new_full((len(rows), n), pad_id)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
