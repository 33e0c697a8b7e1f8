"""Tokenizers for language models, deliberately small and explicit:

- ``CharTokenizer``: one token per character, the ``vocab_size - len(SPECIALS)`` most
  frequent characters of the training text (rarer ones become ``<unk>``).
- ``ByteBPETokenizer``: byte-level byte-pair encoding (Sennrich et al. 2016, GPT-2's
  byte-level variant): start from the 256 byte values and greedily merge the most
  frequent adjacent pair, never across a pre-tokenized word boundary.

Both are rebuilt identically from the same text and settings (all ties are broken by
token id), and both serialise to a plain ``spec`` dict that models keep in their
checkpoint (``TokenizerSlot``) so a run directory alone is enough to generate text.

Every tokenizer reserves the same special tokens at ids 0..4 (``SPECIALS``), so a BERT
and a GPT trained on the same corpus share ids.

A third kind is read, not learned: ``data.tokenizer=PATH/tokenizer.json`` wraps a
Hugging Face ``tokenizers`` file (``JsonTokenizer``; GPT-2's own, for fine-tuning its
weights), with that file's ids and special tokens. Its spec keeps the whole file, so a
run directory still samples after the folder is gone.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import UserError, choices

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<cls>", "<sep>", "<mask>")
TOKENIZERS = ("char", "bpe")
JSON_HINT = "or a tokenizer.json path"


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


class JsonTokenizer:
    """A Hugging Face ``tokenizers`` file (``tokenizer.json``) behind the zoo's tokenizer
    interface: ids, special tokens and pre-tokenization are the file's own (GPT-2's
    byte-level BPE for a GPT-2 folder). Needs the optional ``tokenizers`` package."""

    kind = "json"

    def __init__(self, text: str, source: str = "tokenizer.json") -> None:
        try:
            from tokenizers import Tokenizer as _HF
        except ImportError:
            raise UserError("a tokenizer.json needs the optional package 'tokenizers': "
                            "pip install -e \".[hf]\"") from None
        try:
            self.tok = _HF.from_str(text)
        except Exception as e:  # noqa: BLE001 - the library raises its own untyped errors
            raise UserError(f"cannot read {source} as a tokenizers file: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        self.text, self.source = text, source
        self.byte_level = (json.loads(text).get("decoder") or {}).get("type") == "ByteLevel"

    @classmethod
    def from_file(cls, path: str | Path) -> JsonTokenizer:
        p = Path(str(path)).expanduser()
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.is_file():
            raise UserError(f"tokenizer file not found: {p}")
        return cls(p.read_text(encoding="utf-8"), str(p))

    @property
    def vocab_size(self) -> int:
        return int(self.tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_lengths(self, size: int) -> list[int]:
        """UTF-8 bytes each id stands for (byte-level files: one character of the token
        per byte, GPT-2's byte alphabet; others: the bytes of the id decoded alone);
        special tokens count 0."""
        special = {t.content for t in self.tok.get_added_tokens_decoder().values() if t.special}
        lens = []
        for i in range(self.vocab_size):
            token = self.tok.id_to_token(i)
            if token is None or token in special:
                lens.append(0)
            elif self.byte_level:
                lens.append(len(token))
            else:
                lens.append(len(self.tok.decode([i]).encode("utf-8")))
        return (lens + [0] * size)[:size]

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "json": self.text}


Tokenizer = CharTokenizer | ByteBPETokenizer | JsonTokenizer


def tokenizer_from_spec(spec: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from ``tokenizer.spec()`` (e.g. the copy kept in a checkpoint)."""
    if spec["kind"] == "char":
        return CharTokenizer(list(spec["chars"]), spec["specials"])
    if spec["kind"] == "bpe":
        return ByteBPETokenizer([tuple(m) for m in spec["merges"]], spec["specials"])
    if spec["kind"] == "json":
        return JsonTokenizer(spec["json"], "the checkpoint's tokenizer")
    raise UserError(f"unknown tokenizer kind '{spec['kind']}'; valid: {choices(TOKENIZERS)}")


def tokenizer_json(tok: Tokenizer) -> str | None:
    """The tokenizer as a ``tokenizers`` file with the same ids, or None where there is no
    such form (the zoo's byte-level BPE pre-tokenizes and numbers bytes its own way). A
    character tokenizer becomes a word-level vocabulary over single characters."""
    if isinstance(tok, JsonTokenizer):
        return tok.text
    if not isinstance(tok, CharTokenizer):
        return None
    try:
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as _HF
    except ImportError:
        raise UserError("writing a tokenizer.json needs the optional package 'tokenizers': "
                        "pip install -e \".[hf]\"") from None
    vocab = {t: i for i, t in enumerate(tok.itos)}
    hf = _HF(models.WordLevel(vocab, unk_token=tok.specials[tok.unk]))
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens(list(tok.specials))
    return hf.to_str()


def is_tokenizer_file(kind: str) -> bool:
    return str(kind).endswith(".json") or Path(str(kind)).expanduser().is_dir()


@functools.lru_cache(maxsize=8)
def _train_cached(kind: str, digest: str, vocab_size: int, text: str) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(text, vocab_size)
    return ByteBPETokenizer.train(text, vocab_size)


@functools.lru_cache(maxsize=4)
def _read_json_tokenizer(path: str, mtime: float) -> JsonTokenizer:
    return JsonTokenizer.from_file(path)


def build_tokenizer(kind: str, text: str, vocab_size: int) -> Tokenizer:
    """Train a tokenizer of ``kind`` (char or bpe) with ``vocab_size`` ids on ``text``, or
    read ``kind`` as a ``tokenizer.json`` path (a folder means its tokenizer.json), whose
    ids must fit in ``vocab_size``."""
    if kind not in TOKENIZERS and is_tokenizer_file(kind):
        p = Path(str(kind)).expanduser()
        p = p / "tokenizer.json" if p.is_dir() else p
        if not p.is_file():
            raise UserError(f"tokenizer file not found: {p}")
        tok = _read_json_tokenizer(str(p.resolve()), p.stat().st_mtime)
        if tok.vocab_size > int(vocab_size):
            raise UserError(f"{p} has {tok.vocab_size} ids but data.vocab_size={vocab_size}; "
                            f"set data.vocab_size={tok.vocab_size}")
        return tok
    if kind not in TOKENIZERS:
        raise UserError(f"unknown tokenizer '{kind}'; valid choices: {choices(TOKENIZERS)} "
                        f"{JSON_HINT}")
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return _train_cached(kind, digest, int(vocab_size), text)


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
        # a tokenizer.json spec is megabytes: through a buffer, not a Python list
        return torch.frombuffer(bytearray(json.dumps(self.spec).encode("utf-8")), dtype=torch.uint8)

    def set_extra_state(self, state: torch.Tensor) -> None:
        raw = state.cpu().numpy().tobytes()
        self.spec = json.loads(raw.decode("utf-8")) if raw else None
