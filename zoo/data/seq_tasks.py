"""Synthetic sequence tasks with exact answers, generated deterministically from a seed.

Sequence-to-sequence tasks (batches ``(src, tgt)``: src (B, S) ids padded with 0, tgt
(B, T) = ``<bos>`` output ``<eos>``, padded with 0):

- ``copy``, ``reverse``, ``sort``: a random string over ``alphabet`` -> itself,
  reversed, sorted.
- ``dates``: a date written the way people do ("Tuesday, March 5, 2024", "5 mar 2024",
  "5.3.2024") -> ISO 8601 ("2024-03-05").
- ``count``: a string of letters -> how many times its first letter occurs, in digits.

Sequence classification tasks (batches ``(tokens, labels)``: tokens (B, S) padded with
0, labels (B,) int64):

- ``parity``: a bit string -> whether it holds an odd number of ones.
- ``order``: a sentence of words that contains both ``alpha`` and ``omega`` -> whether
  ``alpha`` comes first. Every sentence has the same bag of marker words, so a
  bag-of-words model is at chance while a recurrent model solves it.

Per-step tagging (``running_parity``): a bit string -> the parity of the prefix at every
step; batches ``(tokens, tags)`` with tags (B, S) padded with -100.

The word2vec corpus lives in :mod:`zoo.data.word2vec` and the captioning data in
:mod:`zoo.data.captions`; their names stay importable from here, because configs and
older run directories name ``zoo.data.seq_tasks.PlantedClusterData`` and
``ShapesCaptionData``.
"""

from __future__ import annotations

import calendar
import datetime
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule
from zoo.data.batches import LabelledBatch, TokenBatch
from zoo.errors import DataError, UserError, choices

PAD, BOS, EOS, UNK = 0, 1, 2, 3
TASK_SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
SEQ2SEQ_TASKS = ("copy", "reverse", "sort", "dates", "count")
CLASSIFICATION_TASKS = ("parity", "order")
TAGGING_TASKS = ("running_parity",)
TASKS = SEQ2SEQ_TASKS + CLASSIFICATION_TASKS + TAGGING_TASKS
TAG_PAD = -100


class TaskVocab:
    """Ids 0..3 are ``<pad> <bos> <eos> <unk>``, then the task's symbols in sorted order.
    Character tasks split text into characters; word tasks (``words=True``) on spaces."""

    def __init__(self, symbols: Sequence[str], words: bool = False) -> None:
        self.words = words
        self.itos = list(TASK_SPECIALS) + sorted(set(symbols))
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def split(self, text: str) -> list[str]:
        return text.split() if self.words else list(text)

    def encode(self, text: str, strict: bool = True) -> list[int]:
        out = []
        for s in self.split(text):
            if s not in self.stoi:
                if strict:
                    known = " ".join(self.itos[len(TASK_SPECIALS):])
                    raise UserError(f"'{s}' is not in this task's vocabulary; known symbols: {known}")
                out.append(UNK)
            else:
                out.append(self.stoi[s])
        return out

    def decode(self, ids: Sequence[int], stop_at_eos: bool = True) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS and stop_at_eos:
                break
            if i >= len(TASK_SPECIALS) and i < len(self.itos):
                out.append(self.itos[i])
        return (" " if self.words else "").join(out)


# ----------------------------------------------------------------------------- generators
DIGITS = "0123456789"
DATE_FORMATS = (
    "{d} {Month} {Y}", "{Month} {d}, {Y}", "{Mon} {d} {Y}", "{d} {mon} {Y}", "{dd}.{mm}.{Y}",
    "{d}.{m}.{Y}", "{Weekday}, {Month} {d}, {Y}", "{Wkd} {d} {Mon} {Y}", "{month} {d} {Y}",
)
ORDER_FILLER = tuple(f"w{i}" for i in range(30))


def _date_text(rng: random.Random) -> tuple[str, str]:
    day = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(36525))
    fmt = rng.choice(DATE_FORMATS)
    month = calendar.month_name[day.month]
    weekday = calendar.day_name[day.weekday()]
    src = fmt.format(d=day.day, dd=f"{day.day:02d}", m=day.month, mm=f"{day.month:02d}",
                     Y=day.year, Month=month, month=month.lower(), Mon=month[:3],
                     mon=month[:3].lower(), Weekday=weekday, Wkd=weekday[:3])
    return src, day.isoformat()


def task_symbols(task: str, alphabet: str) -> tuple[list[str], bool]:
    """Every symbol inputs or outputs of ``task`` can contain, and whether it is word-level."""
    if task == "dates":
        names = [calendar.month_name[m] for m in range(1, 13)] + list(calendar.day_name)
        return sorted(set("".join(names) + "".join(names).lower() + DIGITS + " ,.-")), False
    if task == "count":
        return sorted(set(alphabet + DIGITS)), False
    if task in ("parity", "running_parity"):
        return ["0", "1"], False
    if task == "order":
        return list(ORDER_FILLER) + ["alpha", "omega"], True
    return sorted(set(alphabet)), False


def make_example(task: str, rng: random.Random, alphabet: str, min_len: int, max_len: int
                 ) -> tuple[str, Any]:
    """One (input, answer) pair; the answer is a string, a class id, or a list of tags."""
    n = rng.randint(min_len, max_len)
    if task == "dates":
        return _date_text(rng)
    if task in ("parity", "running_parity"):
        bits = "".join(rng.choice("01") for _ in range(n))
        if task == "parity":
            return bits, bits.count("1") % 2
        return bits, [bits[: i + 1].count("1") % 2 for i in range(n)]
    if task == "order":
        words = [rng.choice(ORDER_FILLER) for _ in range(max(n - 2, 0))]
        i, j = sorted(rng.sample(range(len(words) + 2), 2))
        label = rng.random() < 0.5
        first, second = ("alpha", "omega") if label else ("omega", "alpha")
        words.insert(i, first)
        words.insert(j, second)
        return " ".join(words), int(label)
    s = "".join(rng.choice(alphabet) for _ in range(n))
    if task == "copy":
        return s, s
    if task == "reverse":
        return s, s[::-1]
    if task == "sort":
        return s, "".join(sorted(s))
    if task == "count":
        return s, str(s.count(s[0]))
    raise UserError(f"unknown task '{task}'; valid choices: {choices(TASKS)}")


# ----------------------------------------------------------------------------- datasets
class _Examples(Dataset):
    def __init__(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[i]


def pad_stack(seqs: Sequence[torch.Tensor], value: int) -> torch.Tensor:
    """Right-pad 1-D tensors to the longest -> (B, max_len)."""
    n = max(len(s) for s in seqs)
    out = torch.full((len(seqs), n), value, dtype=torch.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


class SeqTaskData(DataModule):
    """A synthetic sequence task (see the module docstring for the tasks and batch forms).

    Args:
        task: one of ``TASKS``.
        alphabet: symbols of copy/reverse/sort/count strings.
        min_len, max_len: input length range (symbols; words for ``order``).
        train_size, val_size, test_size: examples per split; val/test inputs never occur
            in the training split.
        vocab_size: must equal the task's vocabulary (4 specials + its symbols); checked.
        seed: the generator's seed (the data does not depend on the run's seed).
    """

    def __init__(self, *, task: str, alphabet: str = DIGITS, min_len: int = 3, max_len: int = 10,
                 train_size: int = 20000, val_size: int = 1000, test_size: int = 1000,
                 vocab_size: int | None = None, seed: int = 1234, **kw: Any) -> None:
        super().__init__(task=task, alphabet=alphabet, min_len=min_len, max_len=max_len,
                         train_size=train_size, val_size=val_size, test_size=test_size,
                         vocab_size=vocab_size, seed=seed, **kw)
        if task not in TASKS:
            raise UserError(f"unknown task '{task}'; valid choices: {choices(TASKS)}")
        if not 1 <= min_len <= max_len:
            raise UserError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
        self.task, self.alphabet = task, str(alphabet)
        self.min_len, self.max_len, self.seed = int(min_len), int(max_len), int(seed)
        self.sizes = {"train": int(train_size), "val": int(val_size), "test": int(test_size)}
        symbols, words = task_symbols(task, self.alphabet)
        self.vocab = TaskVocab(symbols, words)
        if vocab_size is not None and int(vocab_size) != len(self.vocab):
            raise DataError(f"data.vocab_size={vocab_size} but task '{task}' with alphabet "
                            f"'{self.alphabet}' has {len(self.vocab)} tokens; set "
                            f"data.vocab_size={len(self.vocab)}")
        self.kind = ("seq2seq" if task in SEQ2SEQ_TASKS else
                     "classification" if task in CLASSIFICATION_TASKS else "tagging")
        self.collate_fn = self._collate
        self.meta.update(vocab=self.vocab.itos, kind=self.kind, pad_id=PAD, bos_id=BOS, eos_id=EOS)
        self._raw: dict[str, list[tuple[str, Any]]] | None = None

    def examples(self, split: str) -> list[tuple[str, Any]]:
        """The (input text, answer) pairs of ``split``, generated once for all splits."""
        if self._raw is None:
            rng = random.Random(self.seed)
            gen = lambda: make_example(self.task, rng, self.alphabet, self.min_len, self.max_len)
            train = [gen() for _ in range(self.sizes["train"])]
            seen = {x for x, _ in train}
            raw = {"train": train}
            for name in ("val", "test"):
                out: list[tuple[str, Any]] = []
                tries = 0
                while len(out) < self.sizes[name]:
                    x, y = gen()
                    tries += 1
                    if x in seen and tries < 100 * self.sizes[name]:
                        continue  # held-out inputs are new, when the task has enough of them
                    seen.add(x)
                    out.append((x, y))
                raw[name] = out
            self._raw = raw
        return self._raw[split]

    def encode_example(self, x: str, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        src = torch.tensor(self.vocab.encode(x), dtype=torch.int64)
        if self.kind == "seq2seq":
            tgt = torch.tensor([BOS] + self.vocab.encode(y) + [EOS], dtype=torch.int64)
        elif self.kind == "classification":
            tgt = torch.tensor(int(y), dtype=torch.int64)
        else:
            tgt = torch.tensor(y, dtype=torch.int64)
        return src, tgt

    def build(self, split: str) -> Dataset:
        return _Examples([self.encode_example(x, y) for x, y in self.examples(split)])

    def _collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> LabelledBatch | TokenBatch:
        src = pad_stack([s for s, _ in items], PAD)
        if self.kind == "classification":
            return LabelledBatch(src, torch.stack([t for _, t in items]))
        return TokenBatch(src, pad_stack([t for _, t in items], PAD if self.kind == "seq2seq" else TAG_PAD))


_MOVED = {
    "PlantedClusterCorpus": "zoo.data.word2vec", "SkipGramWindows": "zoo.data.word2vec",
    "PlantedClusterData": "zoo.data.word2vec", "CAPTION_WORDS": "zoo.data.captions",
    "describe_scene": "zoo.data.captions", "ShapesCaptionData": "zoo.data.captions",
}


def __getattr__(name: str) -> Any:
    # resolved on first use: the moved modules import this one for TaskVocab and pad_stack
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
