"""The planted-cluster corpus for word2vec: sentences whose content words come from one
hidden cluster each, so words of one cluster share their contexts and should end up each
other's nearest neighbours; and the skip-gram training windows cut from it."""

from __future__ import annotations

import random
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule
from zoo.errors import DataError


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
