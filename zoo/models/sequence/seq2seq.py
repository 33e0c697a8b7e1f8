"""Encoder-decoder LSTM (asynchronous many-to-many) for sequence-to-sequence tasks."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from zoo.layers.recurrent import State, make_recurrent
from zoo.models.base import ZooModel
from zoo.models.sequence.decoding import Translator


class Seq2SeqLSTM(Translator, ZooModel):
    """Sequence to sequence learning with LSTMs (Sutskever et al. 2014): an encoder LSTM
    reads the (packed, variable-length) input and its final (h, c) is the only thing the
    decoder LSTM starts from; the decoder is trained with teacher forcing and, at test
    time, each predicted token is fed back as the next input.

    ``predict(batch)`` returns decoded ids (B, L) without ``<bos>``, padded after
    ``<eos>``; the evaluator scores exact match against the targets.
    """

    def __init__(self, *, vocab_size: int, embed_dim: int = 64, hidden_size: int = 256,
                 num_layers: int = 2, dropout: float = 0.0, max_len: int = 32,
                 beam_size: int = 1, impl: str = "torch", pad_id: int = 0, bos_id: int = 1,
                 eos_id: int = 2) -> None:
        super().__init__()
        self.vocab_size, self.max_len, self.beam_size = vocab_size, max_len, beam_size
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.src_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.encoder = make_recurrent("lstm", embed_dim, hidden_size, num_layers, dropout, impl)
        self.decoder = make_recurrent("lstm", embed_dim, hidden_size, num_layers, dropout, impl)
        self.head = nn.Linear(hidden_size, vocab_size)

    def encode(self, src: torch.Tensor) -> State:
        """src (B, S) padded -> the encoder's final (h, c), each (layers, B, H), read after
        each sequence's last real token (packing skips the padding)."""
        lengths = (src != self.pad_id).sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.src_embed(src), lengths, batch_first=True,
                                      enforce_sorted=False)
        _, state = self.encoder(packed)
        return state

    def decode(self, tgt_in: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Teacher-forced decoder: tgt_in (B, T) -> logits (B, T, V)."""
        out, state = self.decoder(self.tgt_embed(tgt_in), state)
        return self.head(out), state

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        src, tgt = batch
        logits, _ = self.decode(tgt[:, :-1], self.encode(src))
        loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), tgt[:, 1:].reshape(-1),
                               ignore_index=self.pad_id)
        return {"loss": loss}

    def _step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        # the LSTM state already summarises tokens[:, :-1]: feed only the newest token
        logits, state = self.decode(tokens[:, -1:], state)
        return logits[:, -1].log_softmax(-1), state

    @staticmethod
    def _reorder(state: State, idx: torch.Tensor) -> State:
        return tuple(s.index_select(1, idx) for s in state)  # type: ignore[return-value]

