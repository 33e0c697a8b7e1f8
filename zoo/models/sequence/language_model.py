"""Character-level recurrent language model: synchronous many-to-many, each step predicts
the next token, and at generation time each output is fed back as the next input."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.batches import TokenBatch
from zoo.data.tokenizers import TokenizerSlot
from zoo.layers.decoding import sample_next
from zoo.layers.recurrent import State, detach_state, make_recurrent
from zoo.models.base import ZooModel
from zoo.models.sequence.generation import TextGenerator


class RecurrentLM(TextGenerator, ZooModel):
    """An Elman RNN (tanh) or LSTM language model (Mikolov et al. 2010; Graves 2013),
    trained with truncated backpropagation through time.

    With ``carry_state`` the detached hidden state of one training batch starts the next
    one (the data module then serves B parallel streams in order, ``data.contiguous``),
    so the model sees context beyond one window while gradients stop at its edge. The
    state is reset whenever the batch shape changes and before validation/prediction,
    where every window starts from a zero state.
    """

    def __init__(self, *, vocab_size: int, cell: str = "lstm", embed_dim: int = 64,
                 hidden_size: int = 256, num_layers: int = 2, dropout: float = 0.0,
                 impl: str = "torch", carry_state: bool = True, tie_weights: bool = False) -> None:
        super().__init__()
        self.vocab_size, self.carry_state = vocab_size, carry_state
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.rnn = make_recurrent(cell, embed_dim, hidden_size, num_layers, dropout, impl)
        self.drop = nn.Dropout(dropout)
        if tie_weights:  # Press & Wolf 2017: output matrix = input embedding
            self.proj = nn.Linear(hidden_size, embed_dim, bias=False)
            self.head = nn.Linear(embed_dim, vocab_size)
            self.head.weight = self.embed.weight
        else:
            self.proj = nn.Identity()
            self.head = nn.Linear(hidden_size, vocab_size)
        self.tokenizer_slot = TokenizerSlot()
        self._carry: State | None = None

    def forward(self, ids: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
        """ids (B, T) -> logits (B, T, V) and the state after the last step."""
        out, state = self.rnn(self.drop(self.embed(ids)), state)   # (B, T, H)
        return self.head(self.proj(self.drop(out))), state

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        x, y = TokenBatch.of(batch)
        state = self._carry if self.carry_state else None
        if state is not None and (state[0] if isinstance(state, tuple) else state).shape[1] != x.shape[0]:
            state = None  # a batch of a different size is not a continuation
        logits, state = self(x, state)
        self._carry = detach_state(state) if self.carry_state else None
        return {"loss": F.cross_entropy(logits.reshape(-1, self.vocab_size), y.reshape(-1))}

    def training_state(self) -> dict[str, torch.Tensor] | None:
        """The carried hidden state, saved in ``last.pt`` so that a resumed run continues
        the streams exactly where it stopped (trainer hook)."""
        if self._carry is None:
            return None
        parts = self._carry if isinstance(self._carry, tuple) else (self._carry,)
        return {f"carry{i}": p.detach().cpu() for i, p in enumerate(parts)}

    def load_training_state(self, state: dict[str, torch.Tensor] | None) -> None:
        if not state:
            self._carry = None
            return
        device = next(self.parameters()).device
        parts = tuple(state[f"carry{i}"].to(device) for i in range(len(state)))
        self._carry = parts if len(parts) > 1 else parts[0]

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        self._carry = None
        return self(TokenBatch.of(batch).inputs)[0]

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ids (B, T0): the state summarises the whole prefix, so each new token
        costs one step. Returns (B, T0 + max_new_tokens)."""
        was_training = self.training
        self.eval()
        self._carry = None
        logits, state = self(ids)
        out = [ids]
        for _ in range(max_new_tokens):
            nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)  # (B,)
            out.append(nxt[:, None])
            logits, state = self(nxt[:, None], state)
        self.train(was_training)
        return torch.cat(out, dim=1)
