"""Text corpora and the language-modelling data built on them.

The default corpus is Python's own documentation, ``pydoc_data.topics`` (shipped with
CPython, ~465 K characters), so every language model trains without a download; any
UTF-8 text file works through ``data=text_file data.path=...``. ``TextData`` tokenizes
it (:mod:`zoo.data.tokenizers`) and serves next-token windows or parallel streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule
from zoo.data.batches import collate_tokens
from zoo.data.tokenizers import Tokenizer, build_tokenizer
from zoo.errors import DataError, UserError


def pydoc_corpus() -> str:
    """Python's documentation topics, concatenated in sorted-key order (deterministic)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some minimal Python builds strip pydoc_data
        raise DataError("this Python installation has no pydoc_data.topics; use data=text_file "
                        "data.path=FILE with a UTF-8 text file instead") from None
    return "".join(topics[k] for k in sorted(topics))


def read_text_file(path: str | Path | None) -> str:
    """The content of a UTF-8 text file; a person's mistakes raise DataError."""
    if path is None or str(path) in ("", "???"):
        raise DataError("data=text_file needs data.path=FILE, a UTF-8 text file to train on")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise DataError(f"text file not found: {p.resolve()}; data.path must name a UTF-8 "
                        "text file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{p.resolve()} is not UTF-8 text (byte {e.start}); data.path must "
                        "name a UTF-8 text file") from None


def load_corpus(path: str | Path | None) -> str:
    """``path`` None means the embedded pydoc corpus."""
    return pydoc_corpus() if path is None else read_text_file(path)


def split_bounds(n: int, fractions: Sequence[float]) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges for train/val/test of a length-``n`` sequence."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise UserError(f"data.split must be three non-negative fractions summing to 1 "
                        f"(train, val, test), got {list(fractions)}")
    a = int(n * fractions[0])
    b = a + int(n * fractions[1])
    return [(0, a), (a, b), (b, n)]


# ----------------------------------------------------------------------------- language-model data
class LMWindows(Dataset):
    """Non-overlapping windows of a token stream: item i is (ids[iT : iT+T], ids[iT+1 : iT+T+1])."""

    def __init__(self, ids: torch.Tensor, seq_len: int) -> None:
        self.ids, self.seq_len = ids, seq_len
        self.n = max((len(ids) - 1) // seq_len, 0)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = i * self.seq_len
        chunk = self.ids[s: s + self.seq_len + 1]
        return chunk[:-1], chunk[1:]


class LMStreams(Dataset):
    """The token stream cut into ``streams`` equal parallel streams for truncated BPTT.

    Read in order with batch size ``streams``, batch k holds chunk k of every stream, so
    row b of batch k+1 continues row b of batch k and a recurrent model can carry its
    hidden state across batches.
    """

    def __init__(self, ids: torch.Tensor, seq_len: int, streams: int) -> None:
        self.seq_len, self.streams = seq_len, streams
        self.stream_len = (len(ids) - 1) // streams
        self.chunks = self.stream_len // seq_len
        self.ids = ids

    def __len__(self) -> int:
        return self.chunks * self.streams

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, b = divmod(i, self.streams)
        s = b * self.stream_len + k * self.seq_len
        chunk = self.ids[s: s + self.seq_len + 1]
        return chunk[:-1], chunk[1:]


class TextData(DataModule):
    """A character- or BPE-tokenized text for language models; batches ``(inputs, targets)``
    of int64 ids, (B, T) each, targets shifted by one.

    Args:
        path: a UTF-8 text file, or None for the embedded pydoc corpus.
        tokenizer: ``char`` or ``bpe``.
        vocab_size: ids of the tokenizer (the model's embedding size).
        seq_len: tokens per training/validation window.
        split: fractions of the token stream for train/val/test (contiguous parts).
        contiguous: arrange the training split as ``batch_size`` parallel streams read
            in order (``shuffle = False``), for recurrent models that carry their state.
    """

    collate_fn = staticmethod(collate_tokens)  # batches are TokenBatch(inputs, targets)

    def __init__(self, *, path: str | None = None, tokenizer: str = "char", vocab_size: int = 128,
                 seq_len: int = 128, split: Sequence[float] = (0.9, 0.05, 0.05),
                 contiguous: bool = False, **kw: Any) -> None:
        super().__init__(path=path, tokenizer=tokenizer, vocab_size=vocab_size, seq_len=seq_len,
                         split=list(split), contiguous=contiguous, **kw)
        self.path, self.tokenizer_kind, self.vocab_size = path, tokenizer, int(vocab_size)
        self.split_fractions = list(split)
        split_bounds(0, self.split_fractions)  # a bad split is reported at once
        self.seq_len = int(seq_len)
        self.contiguous = bool(contiguous)
        self.shuffle = not self.contiguous
        self._tokenizer: Tokenizer | None = None
        self._split_text: dict[str, str] = {}

    # The text is read on first use, not at construction: predict.py builds the data
    # module of a run, and a model that keeps its tokenizer must be able to generate
    # after the training file is gone.
    @property
    def meta(self) -> dict[str, Any]:
        if self._tokenizer is None and hasattr(self, "_split_text"):
            self._load()
        return self._meta

    @meta.setter
    def meta(self, value: dict[str, Any]) -> None:
        self._meta = value

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._load()
        return self._tokenizer  # type: ignore[return-value]

    def _load(self) -> None:
        text = load_corpus(self.path)
        bounds = split_bounds(len(text), self.split_fractions)
        # the vocabulary is learned on the training part only, so val/test stay unseen
        tok = build_tokenizer(self.tokenizer_kind, text[: bounds[0][1]], self.vocab_size)
        self._split_text = {name: text[a:b] for name, (a, b) in zip(self.splits, bounds)}
        self._meta["chars_per_token"] = tok.token_lengths(self.vocab_size)
        self._meta["tokenizer_spec"] = tok.spec()
        self._tokenizer = tok

    def encode_split(self, split: str) -> torch.Tensor:
        tok = self.tokenizer
        return torch.tensor(tok.encode(self._split_text[split]), dtype=torch.int64)

    def build(self, split: str) -> Dataset:
        ids = self.encode_split(split)
        if len(ids) < self.seq_len + 1:
            where = self.path or "pydoc_data.topics"
            raise DataError(f"the {split} part of {where} has {len(ids)} tokens, fewer than "
                            f"one window of data.seq_len={self.seq_len}+1; use a longer text, "
                            "a smaller seq_len or a different data.split")
        if split == "train" and self.contiguous:
            ds = LMStreams(ids, self.seq_len, self.batch_size)
            if len(ds) == 0:
                raise DataError(f"the training text is too short for {self.batch_size} streams "
                                f"of {self.seq_len} tokens; lower data.batch_size or seq_len")
            return ds
        return LMWindows(ids, self.seq_len)
