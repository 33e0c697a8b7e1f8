"""What every generative text model shares: sampling the next token (temperature, top-k,
nucleus/top-p; in :mod:`zoo.layers.decoding`) and the tokenizer kept inside the checkpoint.

A language model mixes in ``TextGenerator`` and defines ``generate(ids, max_new_tokens,
...)``; the language-modelling task (``zoo.tasks.language_modelling``) turns that into
``predict.py run=DIR prompt="def " max_new_tokens=200 temperature=0.8 top_k=40 top_p=0.95
seed=0``.
"""

from __future__ import annotations

from typing import Any

import torch

from zoo.data.tokenizers import TokenizerSlot
from zoo.layers.decoding import sample_next

__all__ = ["TextGenerator", "TokenizerSlot", "sample_next"]


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

    def generate_speculative(self, ids: torch.Tensor, max_new_tokens: int
                             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Greedy decoding that drafts tokens and verifies them (``predict.py
        speculative=true``): (ids, {"acceptance_rate": ...}). Models without a drafter refuse."""
        from zoo.errors import UserError

        raise UserError(f"{type(self).__name__} has no draft model for speculative decoding")

    def extra_evaluators(self) -> dict[str, Any]:
        """Evaluators beside the language-model one, fed the same batches, their numbers
        prefixed with the key (a mixture of experts reports its expert load)."""
        return {}
