"""What every generative text model shares: sampling the next token (temperature, top-k,
nucleus/top-p) and the tokenizer kept inside the checkpoint.

A language model mixes in ``TextGenerator`` and defines ``generate(ids, max_new_tokens,
...)``; the language-modelling task (``zoo.tasks.language_modelling``) turns that into
``predict.py run=DIR prompt="def " max_new_tokens=200 temperature=0.8 top_k=40 top_p=0.95
seed=0``.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn


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


class TokenizerSlot(nn.Module):
    """Keeps the tokenizer's ``spec`` inside the model's state dict (as UTF-8 JSON bytes in
    a uint8 tensor, via PyTorch's extra-state hook), so a checkpoint alone can encode
    prompts and decode samples."""

    def __init__(self) -> None:
        super().__init__()
        self.spec: dict[str, Any] | None = None

    def get_extra_state(self) -> torch.Tensor:
        if self.spec is None:
            return torch.zeros(0, dtype=torch.uint8)
        return torch.tensor(list(json.dumps(self.spec).encode("utf-8")), dtype=torch.uint8)

    def set_extra_state(self, state: torch.Tensor) -> None:
        raw = bytes(state.cpu().tolist())
        self.spec = json.loads(raw.decode("utf-8")) if raw else None


class TextGenerator:
    """Mixin for language models with ``tokenizer_slot`` and ``generate``: fills the slot at
    the start of training."""

    task = "language_modelling"
    tokenizer_slot: TokenizerSlot

    def on_train_start(self, data: Any, run_dir: str) -> None:
        tok = getattr(data, "tokenizer", None)
        if tok is not None:
            self.tokenizer_slot.spec = tok.spec()

    def generate(self, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError
