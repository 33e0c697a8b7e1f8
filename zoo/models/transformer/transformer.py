"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.layers.attention import (
    SinusoidalPositions,
    TransformerBlock,
    causal_mask,
    padding_mask,
)
from zoo.models.base import ZooModel
from zoo.models.sequence.decoding import Translator


class Transformer(Translator, ZooModel):
    """Encoder-decoder Transformer: token embeddings (scaled by sqrt(d)) plus sinusoidal
    positions; N post-norm encoder layers of self-attention and a ReLU feed-forward
    network; N decoder layers of causally masked self-attention, cross-attention to the
    encoder output and a feed-forward network; one embedding matrix shared by the source,
    the target and the output layer (the paper shares all three).

    ``predict(batch)`` returns decoded ids (B, L) without ``<bos>``, greedy or (with
    ``beam_size > 1``) beam search; the evaluator scores exact match.
    """

    def __init__(self, *, vocab_size: int, dim: int = 128, num_heads: int = 4,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2, ff_dim: int = 512,
                 dropout: float = 0.1, max_len: int = 32, max_positions: int = 256,
                 beam_size: int = 1, label_smoothing: float = 0.0, pad_id: int = 0,
                 bos_id: int = 1, eos_id: int = 2) -> None:
        super().__init__()
        self.vocab_size, self.dim, self.max_len, self.beam_size = vocab_size, dim, max_len, beam_size
        self.label_smoothing = label_smoothing
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)  # so embed * sqrt(d) has unit scale
        self.positions = SinusoidalPositions(dim, max_positions)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(
            TransformerBlock(dim, num_heads, ff_dim, dropout, norm_first=False, activation="relu")
            for _ in range(num_encoder_layers))
        self.decoder = nn.ModuleList(
            TransformerBlock(dim, num_heads, ff_dim, dropout, norm_first=False, activation="relu",
                             cross_attention=True) for _ in range(num_decoder_layers))

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.drop(self.embed(ids) * math.sqrt(self.dim) + self.positions(ids.shape[1]))

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> memory (B, S, D) and its key mask (B, 1, 1, S)."""
        mask = padding_mask(src, self.pad_id)
        x = self._embed(src)
        for layer in self.encoder:
            x = layer(x, mask=mask)
        return x, mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor
               ) -> torch.Tensor:
        """tgt_in (B, T) -> logits (B, T, V); position t sees target tokens <= t only."""
        T = tgt_in.shape[1]
        mask = causal_mask(T, T, tgt_in.device) & padding_mask(tgt_in, self.pad_id)  # (B,1,T,T)
        y = self._embed(tgt_in)
        for layer in self.decoder:
            y = layer(y, mask=mask, context=memory, context_mask=memory_mask)
        return y @ self.embed.weight.T   # output layer tied to the embedding

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(tgt_in, *self.encode(src))

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        src, tgt = batch
        logits = self(src, tgt[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), tgt[:, 1:].reshape(-1),
                               ignore_index=self.pad_id, label_smoothing=self.label_smoothing)
        return {"loss": loss}

    def _step(self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        # outputs are short: re-run the decoder over the whole prefix each step
        return self.decode(tokens, *state)[:, -1].log_softmax(-1), state

    @staticmethod
    def _reorder(state: tuple[torch.Tensor, torch.Tensor], idx: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        return state[0].index_select(0, idx), state[1].index_select(0, idx)

