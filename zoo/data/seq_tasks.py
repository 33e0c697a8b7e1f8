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

And the planted-cluster corpus for word2vec (``PlantedClusterData``): sentences whose
content words come from one hidden cluster each, so words of one cluster share their
contexts and should end up each other's nearest neighbours.
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
from zoo.data.batches import CaptionBatch, LabelledBatch, TokenBatch
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
LETTERS = "abcdefghijklmnopqrstuvwxyz"
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


# ----------------------------------------------------------------------------- word2vec
class PlantedClusterCorpus:
    """Sentences over ``clusters`` hidden word clusters plus frequent filler words.

    Each sentence picks one cluster; every token is a word of that cluster with
    probability ``p_cluster``, else a filler word drawn with Zipf-like weights (so
    frequent-word subsampling has something to do). Words of a cluster therefore share
    their context distribution and nothing else distinguishes them.
    """

    def __init__(self, clusters: int = 20, words_per_cluster: int = 8, fillers: int = 40,
                 sentences: int = 8000, min_len: int = 8, max_len: int = 16,
                 p_cluster: float = 0.6, seed: int = 1234) -> None:
        rng = random.Random(seed)
        self.cluster_words = [[f"c{c:02d}_{i}" for i in range(words_per_cluster)]
                              for c in range(clusters)]
        self.fillers = [f"the{i:02d}" for i in range(fillers)]
        self.words = self.fillers + [w for ws in self.cluster_words for w in ws]
        self.index = {w: i for i, w in enumerate(self.words)}
        self.cluster_of = [-1] * fillers + [c for c in range(clusters) for _ in range(words_per_cluster)]
        filler_w = [1.0 / (r + 1) for r in range(fillers)]
        self.sentences: list[list[int]] = []
        for _ in range(sentences):
            c = rng.randrange(clusters)
            n = rng.randint(min_len, max_len)
            sent = []
            for _ in range(n):
                if rng.random() < p_cluster:
                    sent.append(self.index[rng.choice(self.cluster_words[c])])
                else:
                    sent.append(rng.choices(range(fillers), weights=filler_w)[0])
            self.sentences.append(sent)


class SkipGramWindows(Dataset):
    """Item i: the word at corpus position i with its context window, for word2vec.

    Returns ``center`` (), ``context`` (2w,) ids (0 where absent), ``mask`` (2w,) float
    (1 = a real, kept context word) and ``negatives`` (2w, k) noise words. As in the
    original word2vec: the window radius is drawn from 1..w (nearer words count more),
    frequent words are dropped with probability 1 - (sqrt(f/t) + 1) t/f (a dropped centre
    zeroes the whole mask), and noise words come from the unigram distribution raised to
    0.75. Windows stop at sentence ends. Randomness comes from the global torch RNG, so a
    seeded run is reproducible; with ``deterministic_seed`` each item draws from its own
    generator seeded by (seed, index) instead, giving the same windows every epoch.
    """

    def __init__(self, tokens: torch.Tensor, sentence_of: torch.Tensor, counts: torch.Tensor,
                 window: int, negatives: int, subsample: float, deterministic_seed: int | None = None
                 ) -> None:
        self.tokens, self.sentence_of, self.window, self.k = tokens, sentence_of, window, negatives
        freq = counts.double() / counts.sum()
        if subsample > 0:
            keep = ((freq / subsample).sqrt() + 1) * subsample / freq.clamp(min=1e-12)
            self.keep = keep.clamp(max=1.0).float()
        else:
            self.keep = torch.ones_like(freq, dtype=torch.float32)
        self.noise = counts.double().pow(0.75).float()
        self.noise /= self.noise.sum()
        self.seed = deterministic_seed

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = None
        if self.seed is not None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        w, n = self.window, len(self.tokens)
        radius = int(torch.randint(1, w + 1, (), generator=g))
        offsets = torch.cat([torch.arange(-w, 0), torch.arange(1, w + 1)])   # (2w,)
        pos = i + offsets
        inside = (pos >= 0) & (pos < n) & (offsets.abs() <= radius)
        pos = pos.clamp(0, n - 1)
        inside &= self.sentence_of[pos] == self.sentence_of[i]
        context = torch.where(inside, self.tokens[pos], torch.zeros_like(pos))
        keep_draw = torch.rand(2 * w + 1, generator=g)
        kept = inside & (keep_draw[1:] < self.keep[context])
        center = self.tokens[i]
        if keep_draw[0] >= self.keep[center]:
            kept = torch.zeros_like(kept)
        negatives = torch.multinomial(self.noise, 2 * w * self.k, replacement=True, generator=g)
        return {"center": center, "context": context, "mask": kept.float(),
                "negatives": negatives.view(2 * w, self.k)}


class _WordClusters(Dataset):
    def __init__(self, ids: list[int], clusters: list[int]) -> None:
        self.ids, self.clusters = torch.tensor(ids), torch.tensor(clusters)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[i], self.clusters[i]


class PlantedClusterData(DataModule):
    """word2vec training windows over a ``PlantedClusterCorpus``; validation/test batches
    are ``(word ids, cluster ids)`` of every clustered word, scored by nearest neighbours.

    ``vocab_size`` must equal fillers + clusters * words_per_cluster (checked).
    """

    def __init__(self, *, clusters: int = 20, words_per_cluster: int = 8, fillers: int = 40,
                 sentences: int = 8000, min_len: int = 8, max_len: int = 16,
                 p_cluster: float = 0.6, window: int = 5, negatives: int = 5,
                 subsample: float = 1e-3, vocab_size: int | None = None, seed: int = 1234,
                 **kw: Any) -> None:
        super().__init__(clusters=clusters, words_per_cluster=words_per_cluster, fillers=fillers,
                         sentences=sentences, min_len=min_len, max_len=max_len,
                         p_cluster=p_cluster, window=window, negatives=negatives,
                         subsample=subsample, vocab_size=vocab_size, seed=seed, **kw)
        self.corpus = PlantedClusterCorpus(clusters, words_per_cluster, fillers, sentences,
                                           min_len, max_len, p_cluster, seed)
        if vocab_size is not None and int(vocab_size) != len(self.corpus.words):
            raise DataError(f"data.vocab_size={vocab_size} but the planted corpus has "
                            f"{len(self.corpus.words)} words; set data.vocab_size="
                            f"{len(self.corpus.words)}")
        self.window, self.negatives, self.subsample = int(window), int(negatives), float(subsample)
        toks = [t for s in self.corpus.sentences for t in s]
        self.tokens = torch.tensor(toks, dtype=torch.int64)
        self.sentence_of = torch.tensor([j for j, s in enumerate(self.corpus.sentences) for _ in s])
        self.counts = torch.bincount(self.tokens, minlength=len(self.corpus.words))
        self.meta.update(words=self.corpus.words, counts=self.counts.tolist(),
                         cluster_of=self.corpus.cluster_of)

    def build(self, split: str) -> Dataset:
        if split == "train":
            return SkipGramWindows(self.tokens, self.sentence_of, self.counts, self.window,
                                   self.negatives, self.subsample)
        ids = [i for i, c in enumerate(self.corpus.cluster_of) if c >= 0]
        return _WordClusters(ids, [self.corpus.cluster_of[i] for i in ids])


# ----------------------------------------------------------------------------- captioning
CAPTION_WORDS = ("a", "and", "small", "large")


def describe_scene(boxes: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str],
                   image_size: int, sizes: bool = True, large: float = 0.3) -> str:
    """The caption of a shapes scene: its objects from left to right, each "a X" (with
    ``sizes``: "a small X" or "a large X", large when the box side exceeds ``large`` of
    the image), joined by "and"."""
    if len(labels) == 0:
        return ""
    order = ((boxes[:, 0] + boxes[:, 2]) / 2).argsort()
    parts = []
    for i in order.tolist():
        name = class_names[int(labels[i]) - 1]
        if sizes:
            side = float((boxes[i, 2:] - boxes[i, :2]).max()) / image_size
            name = f"{'large' if side > large else 'small'} {name}"
        parts.append(f"a {name}")
    return " and ".join(parts)


class _Captions(Dataset):
    def __init__(self, scenes: Dataset, vocab: TaskVocab, class_names: Sequence[str], size: int,
                 sizes: bool, vflip: float = 0.0) -> None:
        self.scenes, self.vocab, self.class_names, self.size = scenes, vocab, class_names, size
        self.sizes, self.vflip = sizes, vflip

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.scenes[i]
        text = describe_scene(target["boxes"], target["labels"], self.class_names, self.size,
                              self.sizes)
        if self.vflip and torch.rand(()) < self.vflip:  # the trainer seeds this generator
            image = image.flip(-2)
        return image, torch.tensor([BOS] + self.vocab.encode(text) + [EOS], dtype=torch.int64)


class ShapesCaptionData(DataModule):
    """One-to-many captioning on synthetic shapes scenes (``zoo.data.shapes``): batches
    ``(images (B, 3, H, W) in [0, 1], captions (B, T))`` where a caption is ``<bos>`` "a
    large circle and a small star" ``<eos>`` (objects left to right), padded with 0.

    ``min_visible`` is the least fraction of a shape left visible by the image border and
    the other shapes (a caption must be decidable from the picture). ``describe_sizes``
    adds "small"/"large" before each shape. ``vflip`` is the probability of flipping a
    training image upside down (the caption is unchanged). ``vocab_size`` must equal
    4 specials + the caption words + the class names (checked; unused words stay in the
    vocabulary so both settings share ids).
    """

    def __init__(self, *, num_classes: int = 3, image_size: int = 64, num_train: int = 4000,
                 num_val: int = 300, num_test: int = 300, max_objects: int = 2,
                 min_size: float = 0.3, max_size: float = 0.6, min_visible: float = 0.8,
                 describe_sizes: bool = False, vflip: float = 0.5, seed: int = 0,
                 vocab_size: int | None = None, **kw: Any) -> None:
        from zoo.data.shapes import SHAPE_NAMES, ShapesDataset

        super().__init__(num_classes=num_classes, image_size=image_size, num_train=num_train,
                         num_val=num_val, num_test=num_test, max_objects=max_objects,
                         min_size=min_size, max_size=max_size, min_visible=min_visible,
                         describe_sizes=describe_sizes, vflip=vflip,
                         seed=seed, vocab_size=vocab_size, **kw)
        if not 0 < float(min_visible) <= 1:
            raise DataError(f"data.min_visible must be in (0, 1], got {min_visible}")
        if not 0 <= float(vflip) <= 1:
            raise DataError(f"data.vflip is a probability in [0, 1], got {vflip}")
        self.describe_sizes, self.vflip = bool(describe_sizes), float(vflip)
        self.class_names = list(SHAPE_NAMES[:num_classes])
        self.vocab = TaskVocab(list(CAPTION_WORDS) + self.class_names, words=True)
        if vocab_size is not None and int(vocab_size) != len(self.vocab):
            raise DataError(f"data.vocab_size={vocab_size} but captions of {num_classes} shape "
                            f"classes use {len(self.vocab)} tokens; set data.vocab_size={len(self.vocab)}")
        self.image_size = int(image_size)
        self.lengths = {"train": num_train, "val": num_val, "test": num_test}
        self.render = {"image_size": image_size, "classes": self.class_names, "max_objects": max_objects,
                           "min_size": min_size, "max_size": max_size, "min_visible": min_visible,
                           "empty_prob": 0.0}
        self.seed = int(seed)
        self._scenes = ShapesDataset
        self.collate_fn = self._collate
        self.meta.update(vocab=self.vocab.itos, class_names=self.class_names)

    def build(self, split: str) -> Dataset:
        # vertical flips only: they keep each shape's name and the left-to-right order
        scenes = self._scenes(self.lengths[split], split=split, seed=self.seed, cache=True,
                              **self.render)
        return _Captions(scenes, self.vocab, self.class_names, self.image_size, self.describe_sizes,
                         self.vflip if split == "train" else 0.0)

    @staticmethod
    def _collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> CaptionBatch:
        return CaptionBatch(torch.stack([im for im, _ in items]), pad_stack([c for _, c in items], PAD))
