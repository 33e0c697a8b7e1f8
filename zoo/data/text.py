"""Text corpora and tokenizers for language models.

The default corpus is Python's own documentation, ``pydoc_data.topics`` (shipped with
CPython, ~465 K characters), so every language model trains without a download; any
UTF-8 text file works through ``data=text_file data.path=...``.

Tokenizers are deliberately small and explicit:

- ``CharTokenizer``: one token per character, the ``vocab_size - len(SPECIALS)`` most
  frequent characters of the training text (rarer ones become ``<unk>``).
- ``ByteBPETokenizer``: byte-level byte-pair encoding (Sennrich et al. 2016, GPT-2's
  byte-level variant): start from the 256 byte values and greedily merge the most
  frequent adjacent pair, never across a pre-tokenized word boundary.

Both are rebuilt identically from the same text and settings (all ties are broken by
token id), and both serialise to a plain ``spec`` dict that models keep in their
checkpoint so a run directory alone is enough to generate text.

Every tokenizer reserves the same special tokens at ids 0..4 (``SPECIALS``), so a BERT
and a GPT trained on the same corpus share ids.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule
from zoo.data.batches import collate_tokens
from zoo.errors import DataError, UserError, choices

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<cls>", "<sep>", "<mask>")
TOKENIZERS = ("char", "bpe")


# ----------------------------------------------------------------------------- corpora
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


# ----------------------------------------------------------------------------- tokenizers
class CharTokenizer:
    """Character-level tokenizer: ids 0..4 are ``SPECIALS``, then one id per character."""

    kind = "char"

    def __init__(self, chars: Sequence[str], specials: Sequence[str] = SPECIALS) -> None:
        self.specials = list(specials)
        self.chars = list(chars)
        self.itos = self.specials + self.chars
        self.stoi = {c: i + len(self.specials) for i, c in enumerate(self.chars)}
        self.unk = self.specials.index("<unk>")

    @classmethod
    def train(cls, text: str, vocab_size: int, specials: Sequence[str] = SPECIALS
              ) -> CharTokenizer:
        room = vocab_size - len(specials)
        if room < 1:
            raise UserError(f"vocab_size {vocab_size} leaves no room for characters after "
                            f"{len(specials)} special tokens")
        counts = Counter(text)
        # most frequent first; ties by code point so the vocabulary is deterministic
        ranked = sorted(counts, key=lambda c: (-counts[c], ord(c)))[:room]
        return cls(sorted(ranked, key=ord), specials)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        stoi, unk = self.stoi, self.unk
        return [stoi.get(c, unk) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        n = len(self.specials)
        out = []
        for i in ids:
            i = int(i)
            if i >= n:
                out.append(self.itos[i] if i < len(self.itos) else "\ufffd")
            elif i == self.unk:
                out.append("\ufffd")
        return "".join(out)

    def token_lengths(self, size: int) -> list[int]:
        """Characters each id stands for (specials 0; ``<unk>`` replaced one character)."""
        lens = [0] * len(self.specials) + [1] * len(self.chars)
        lens[self.unk] = 1
        return (lens + [0] * size)[:size]

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "specials": self.specials, "chars": "".join(self.chars)}


# GPT-2-style pre-tokenization: a word with its leading space, runs of digits,
# punctuation, or whitespace. Merges never cross these chunks.
_CHUNK = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+|_+", re.UNICODE)


class ByteBPETokenizer:
    """Byte-level BPE (Sennrich et al. 2016; GPT-2's byte-level form).

    Ids 0..4 are ``SPECIALS``, ids 5..260 the 256 byte values, and every later id the
    merge of two earlier ids, learned greedily from pair frequencies in the training text.
    """

    kind = "bpe"

    def __init__(self, merges: Sequence[tuple[int, int]], specials: Sequence[str] = SPECIALS
                 ) -> None:
        self.specials = list(specials)
        self.offset = len(self.specials)  # id of byte 0
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}
        self.bytes_of: list[bytes] = [b""] * self.offset + [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            self.bytes_of.append(self.bytes_of[a] + self.bytes_of[b])
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, specials: Sequence[str] = SPECIALS
              ) -> ByteBPETokenizer:
        offset = len(specials)
        n_merges = vocab_size - offset - 256
        if n_merges < 0:
            raise UserError(f"a byte-level BPE needs vocab_size >= {offset + 256}, "
                            f"got {vocab_size}")
        chunk_counts = Counter(_CHUNK.findall(text))
        words = [[offset + b for b in w.encode("utf-8")] for w in chunk_counts]
        freqs = list(chunk_counts.values())
        merges: list[tuple[int, int]] = []
        for new_id in range(offset + 256, offset + 256 + n_merges):
            pairs: Counter = Counter()
            for w, f in zip(words, freqs):
                for p in itertools.pairwise(w):
                    pairs[p] += f
            if not pairs:
                break  # every chunk is a single token already
            # most frequent pair; ties by the smaller pair of ids (deterministic)
            best = min(pairs, key=lambda p: (-pairs[p], p))
            merges.append(best)
            words = [_merge(w, best, new_id) if len(w) > 1 else w for w in words]
        return cls(merges, specials)

    @property
    def vocab_size(self) -> int:
        return len(self.bytes_of)

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is not None:
            return ids
        ids = [self.offset + b for b in chunk.encode("utf-8")]
        first_new = self.offset + 256
        while len(ids) > 1:
            # apply the earliest-learned merge present, exactly as training did
            pair = min(itertools.pairwise(ids), key=lambda p: self.ranks.get(p, 1 << 60))
            rank = self.ranks.get(pair)
            if rank is None:
                break
            ids = _merge(ids, pair, first_new + rank)
        self._cache[chunk] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for chunk in _CHUNK.findall(text):
            out.extend(self._encode_chunk(chunk))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        data = b"".join(self.bytes_of[int(i)] for i in ids if 0 <= int(i) < len(self.bytes_of))
        return data.decode("utf-8", errors="replace")

    def token_lengths(self, size: int) -> list[int]:
        """UTF-8 bytes each id stands for (equal to characters for ASCII text)."""
        lens = [len(b) for b in self.bytes_of]
        return (lens + [0] * size)[:size]

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "specials": self.specials,
                "merges": [list(m) for m in self.merges]}


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


Tokenizer = CharTokenizer | ByteBPETokenizer


def tokenizer_from_spec(spec: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from ``tokenizer.spec()`` (e.g. the copy kept in a checkpoint)."""
    if spec["kind"] == "char":
        return CharTokenizer(list(spec["chars"]), spec["specials"])
    if spec["kind"] == "bpe":
        return ByteBPETokenizer([tuple(m) for m in spec["merges"]], spec["specials"])
    raise UserError(f"unknown tokenizer kind '{spec['kind']}'; valid: {choices(TOKENIZERS)}")


@functools.lru_cache(maxsize=8)
def _train_cached(kind: str, digest: str, vocab_size: int, text: str) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(text, vocab_size)
    return ByteBPETokenizer.train(text, vocab_size)


def build_tokenizer(kind: str, text: str, vocab_size: int) -> Tokenizer:
    """Train a tokenizer of ``kind`` (char or bpe) with ``vocab_size`` ids on ``text``."""
    if kind not in TOKENIZERS:
        raise UserError(f"unknown tokenizer '{kind}'; valid choices: {choices(TOKENIZERS)}")
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return _train_cached(kind, digest, int(vocab_size), text)


# ----------------------------------------------------------------------------- datasets
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


# ----------------------------------------------------------------------------- BERT
def mask_tokens(ids: torch.Tensor, maskable: torch.Tensor, vocab_size: int,
                mask_prob: float = 0.15, generator: torch.Generator | None = None,
                first_random: int = len(SPECIALS)) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption (Devlin et al. 2019).

    Each ``maskable`` position is chosen with probability ``mask_prob``; a chosen token
    becomes ``<mask>`` 80% of the time, a random token (ids ``first_random`` ..
    ``vocab_size - 1``) 10%, and stays unchanged 10% (so the model cannot assume an
    unmasked token is correct). Returns the corrupted ids and the labels: the original
    id at chosen positions, -100 elsewhere (only chosen positions are scored).
    """
    chosen = (torch.rand(ids.shape, generator=generator) < mask_prob) & maskable
    action = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(first_random, vocab_size, ids.shape, generator=generator)
    out = ids.clone()
    out = torch.where(chosen & (action < 0.8), torch.full_like(ids, MASK), out)
    out = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, out)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    return out, labels


class _SentencePairs(Dataset):
    """Item i: ``[CLS] A [SEP] B [SEP]`` with A = segment i and B = segment i + 1 (label 1,
    "is next") or a random other segment (label 0), then masked-LM corruption."""

    def __init__(self, ids: torch.Tensor, seg_len: int, vocab_size: int, mask_prob: float,
                 seed: int | None) -> None:
        self.segments = ids[: len(ids) // seg_len * seg_len].view(-1, seg_len)  # (n, L)
        self.vocab_size, self.mask_prob, self.seed = vocab_size, mask_prob, seed

    def __len__(self) -> int:
        return max(len(self.segments) - 1, 0)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        # validation/test draw from a generator seeded by the index: the same pairs and
        # masks every time; training draws from the global RNG: new ones every epoch
        g = None if self.seed is None else torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        n = len(self.segments)
        is_next = bool(torch.rand((), generator=g) < 0.5) or n < 3
        if is_next:
            j = i + 1
        else:
            j = int(torch.randint(0, n - 2, (), generator=g))
            j = j if j < i else j + 2  # any segment except i and i + 1
        a, b = self.segments[i], self.segments[j]
        ids = torch.cat([torch.tensor([CLS]), a, torch.tensor([SEP]), b, torch.tensor([SEP])])
        segment = torch.cat([torch.zeros(len(a) + 2, dtype=torch.int64),
                             torch.ones(len(b) + 1, dtype=torch.int64)])
        maskable = ids >= len(SPECIALS)
        inputs, labels = mask_tokens(ids, maskable, self.vocab_size, self.mask_prob, g)
        return {"input_ids": inputs, "segment_ids": segment, "mlm_labels": labels,
                "nsp_label": torch.tensor(int(is_next))}


class BertPretrainData(TextData):
    """BERT pre-training batches from a text: dicts with ``input_ids``, ``segment_ids`` and
    ``mlm_labels`` (B, seq_len) and ``nsp_label`` (B,), segments of (seq_len - 3) // 2
    tokens. Same tokenizer settings as ``TextData``, so a GPT and a BERT share ids."""

    collate_fn = None  # dict samples: torch's default collate keeps the keys

    def __init__(self, *, mask_prob: float = 0.15, seed: int = 1234, **kw: Any) -> None:
        super().__init__(**kw)
        self._meta.update(mask_prob=mask_prob, seed=seed)
        self.mask_prob, self.seed = float(mask_prob), int(seed)
        self.shuffle = True

    def build(self, split: str) -> Dataset:
        seg_len = (self.seq_len - 3) // 2
        ids = self.encode_split(split)
        ds = _SentencePairs(ids, seg_len, self.tokenizer.vocab_size, self.mask_prob,
                            None if split == "train" else self.seed)
        if len(ds) < 3:
            raise DataError(f"the {split} part of the text has {len(ids)} tokens, too few for "
                            f"sentence pairs of {seg_len} tokens; use a longer text or a "
                            "smaller data.seq_len")
        return ds


class _ShuffledWindows(Dataset):
    def __init__(self, text: str, width: int, tokenizer: Tokenizer, seed: int) -> None:
        self.text, self.width, self.tokenizer, self.seed = text, width, tokenizer, seed
        self.n = len(text) // width

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        import random

        rng = random.Random(self.seed * 1_000_003 + i)  # a fixed dataset: same label every epoch
        s = self.text[i * self.width: (i + 1) * self.width]
        words = s.split(" ")
        label = int(rng.random() < 0.5 and len(set(words)) > 2)
        if label:
            original = list(words)
            while words == original:
                rng.shuffle(words)
            s = " ".join(words)
        ids = self.tokenizer.encode(s)[: self.width]
        ids = [CLS] + ids + [SEP]
        ids = ids + [PAD] * (self.width + 2 - len(ids))
        return {"input_ids": torch.tensor(ids), "segment_ids": torch.zeros(len(ids), dtype=torch.int64),
                "label": torch.tensor(label)}


class ShuffledWordsData(TextData):
    """A text classification task for fine-tuning: windows of ``seq_len - 2`` tokens of the
    text, half of them with their words shuffled; label 1 = shuffled. Deciding needs a
    feel for the language, which pre-training provides. Batches are dicts with
    ``input_ids``, ``segment_ids`` (B, seq_len) and ``label`` (B,)."""

    collate_fn = None  # dict samples: torch's default collate keeps the keys

    def __init__(self, *, seed: int = 1234, **kw: Any) -> None:
        super().__init__(**kw)
        self._meta.update(seed=seed)
        self.seed = int(seed)
        self.shuffle = True

    def build(self, split: str) -> Dataset:
        tok = self.tokenizer
        ds = _ShuffledWindows(self._split_text[split], self.seq_len - 2, tok, self.seed)
        if len(ds) == 0:
            raise DataError(f"the {split} part of the text is shorter than one window of "
                            f"{self.seq_len - 2} characters; use a longer text")
        return ds
