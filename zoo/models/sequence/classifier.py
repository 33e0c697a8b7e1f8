"""Sequence classification (many-to-one) and per-step tagging (synchronous many-to-many)
with recurrent networks, and the bag-of-words baseline they are compared with."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from zoo.data.batches import TokenBatch
from zoo.layers.recurrent import last_hidden, make_recurrent
from zoo.models.base import ZooModel
from zoo.models.classification.base import Classifier

ENCODINGS = ("embedding", "onehot")


class TokenEncoding(nn.Module):
    """Token ids (B, T) -> vectors (B, T, E): a learned embedding, or the fixed one-hot
    code (E = vocabulary size) that an embedding generalises (embedding = one-hot @ W)."""

    def __init__(self, vocab_size: int, embed_dim: int, encoding: str = "embedding",
                 pad_id: int = 0) -> None:
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.encoding, self.vocab_size = encoding, vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id) if encoding == "embedding" else None
        self.dim = embed_dim if encoding == "embedding" else vocab_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.embed(ids)
        return F.one_hot(ids, self.vocab_size).float()


class RecurrentClassifier(Classifier):
    """Many-to-one RNN/LSTM classifier: the padded batch is packed (lengths from the pad
    id), so the recurrence stops at each sequence's last real token, and the top layer's
    final hidden state h_n (not ``out[:, -1]``, which would read padding) feeds a linear
    classifier."""

    def __init__(self, *, vocab_size: int, num_classes: int, cell: str = "lstm",
                 encoding: str = "embedding", embed_dim: int = 32, hidden_size: int = 64,
                 num_layers: int = 1, dropout: float = 0.0, impl: str = "torch",
                 pad_id: int = 0) -> None:
        super().__init__(num_classes)  # cross-entropy training, logits, classification metrics
        self.pad_id = pad_id
        self.encode_tokens = TokenEncoding(vocab_size, embed_dim, encoding, pad_id)
        self.rnn = make_recurrent(cell, self.encode_tokens.dim, hidden_size, num_layers, dropout, impl)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) right-padded with ``pad_id`` -> logits (B, C)."""
        lengths = (ids != self.pad_id).sum(1).clamp(min=1).cpu()   # CPU int64, as packing wants
        packed = pack_padded_sequence(self.encode_tokens(ids), lengths, batch_first=True,
                                      enforce_sorted=False)
        _, state = self.rnn(packed)
        return self.head(last_hidden(state))


class BagOfWordsClassifier(Classifier):
    """Bag-of-words baseline: a sequence becomes its vector of token counts (the sum of
    its one-hot codes, order discarded), then an MLP classifies it."""

    def __init__(self, *, vocab_size: int, num_classes: int, hidden_size: int = 64,
                 pad_id: int = 0) -> None:
        super().__init__(num_classes)
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.mlp = nn.Sequential(nn.Linear(vocab_size, hidden_size), nn.ReLU(),
                                 nn.Linear(hidden_size, num_classes))

    def bag(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> counts (B, V), padding not counted."""
        counts = F.one_hot(ids, self.vocab_size).float().sum(1)
        counts[:, self.pad_id] = 0
        return counts

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.bag(ids))


class RecurrentTagger(ZooModel):
    """Synchronous many-to-many RNN/LSTM: one label per input step (e.g. part-of-speech
    tags, or the running parity of a bit string), read from that step's hidden state.

    ``predict(batch)`` returns tag ids (B, T); padded steps are scored by nothing (their
    targets are -100).
    """

    task = "tagging"

    def __init__(self, *, vocab_size: int, num_classes: int, cell: str = "lstm",
                 embed_dim: int = 32, hidden_size: int = 64, num_layers: int = 1,
                 dropout: float = 0.0, impl: str = "torch", pad_id: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.encode_tokens = TokenEncoding(vocab_size, embed_dim, "embedding", pad_id)
        self.rnn = make_recurrent(cell, embed_dim, hidden_size, num_layers, dropout, impl)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> per-step logits (B, T, C). Right padding cannot affect earlier
        steps of a uni-directional network, so no packing is needed."""
        out, _ = self.rnn(self.encode_tokens(ids))
        return self.head(out)

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        ids, tags = TokenBatch.of(batch)
        logits = self(ids)
        return {"loss": F.cross_entropy(logits.reshape(-1, self.num_classes), tags.reshape(-1),
                                        ignore_index=-100)}

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self(TokenBatch.of(batch).inputs).argmax(-1)
