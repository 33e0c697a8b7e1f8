"""word2vec: CBOW and skip-gram word embeddings (Mikolov et al. 2013a, 2013b)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.batches import WordBatch
from zoo.models.base import ZooModel

ARCHITECTURES = ("cbow", "skipgram")
OBJECTIVES = ("negative_sampling", "softmax")


class Word2Vec(ZooModel):
    """Two embedding tables, input vectors v (the word vectors kept) and output vectors u.

    - skip-gram: the centre word's v predicts each context word;
    - CBOW: the mean of the context words' v predicts the centre word.

    ``objective="negative_sampling"`` scores the true pair with log σ(u·v) and k noise
    words (drawn by the data from unigram^0.75) with log σ(-u·v), cost O(k) per pair;
    ``"softmax"`` is the full softmax over the vocabulary, cost O(V), for comparison.
    Initialisation follows the original code: v ~ U(±0.5/dim), u = 0.

    Batches are dicts from ``zoo.data.seq_tasks.SkipGramWindows`` (``center``,
    ``context``, ``mask``, ``negatives``); ``predict((word_ids, ...))`` returns the words'
    vectors, scored by planted-cluster nearest neighbours.
    """

    task = "embeddings"

    def __init__(self, *, vocab_size: int, dim: int = 50, architecture: str = "skipgram",
                 objective: str = "negative_sampling") -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.architecture, self.objective = architecture, objective
        self.in_embed = nn.Embedding(vocab_size, dim)
        self.out_embed = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.in_embed.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.out_embed.weight)

    def training_step(self, batch: dict[str, torch.Tensor], group: str = "main"
                      ) -> dict[str, torch.Tensor]:
        center, context, mask, negatives = (batch["center"], batch["context"], batch["mask"],
                                            batch["negatives"])
        if self.architecture == "skipgram":
            v = self.in_embed(center)[:, None, :]                        # (B, 1, D)
            if self.objective == "softmax":
                logits = (v[:, 0] @ self.out_embed.weight.T)              # (B, V)
                nll = -logits.log_softmax(-1).gather(1, context)          # (B, 2w)
                return {"loss": (nll * mask).sum() / mask.sum().clamp(min=1)}
            pos = (self.out_embed(context) * v).sum(-1)                   # (B, 2w)
            neg = torch.einsum("bjkd,bd->bjk", self.out_embed(negatives), v[:, 0])  # (B, 2w, k)
            loss = -F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)        # (B, 2w)
            return {"loss": (loss * mask).sum() / mask.sum().clamp(min=1)}
        # CBOW: mean of the kept context vectors; rows with none kept carry no loss
        n = mask.sum(1, keepdim=True)                                     # (B, 1)
        h = (self.in_embed(context) * mask[..., None]).sum(1) / n.clamp(min=1)  # (B, D)
        has = (n[:, 0] > 0).float()
        if self.objective == "softmax":
            nll = F.cross_entropy(h @ self.out_embed.weight.T, center, reduction="none")
        else:
            pos = (self.out_embed(center) * h).sum(-1)                    # (B,)
            neg = torch.einsum("bkd,bd->bk", self.out_embed(negatives[:, 0]), h)  # (B, k)
            nll = -F.logsigmoid(pos) - F.logsigmoid(-neg).sum(-1)
        return {"loss": (nll * has).sum() / has.sum().clamp(min=1)}

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self.in_embed(WordBatch.of(batch).words)

    @torch.no_grad()
    def nearest(self, word_ids: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """The k nearest words by cosine similarity of input vectors (the word itself
        excluded): (N, k) ids and similarities."""
        w = F.normalize(self.in_embed.weight, dim=1)
        sim = w[word_ids] @ w.T                                            # (N, V)
        sim[torch.arange(len(word_ids)), word_ids] = -float("inf")
        top = sim.topk(k, dim=1)
        return top.indices, top.values

    @torch.no_grad()
    def export_text(self, path: str | pathlib.Path, words: Sequence[str]) -> None:
        """The standard word2vec text format: a "count dim" header, then "word v1 ... vd"."""
        w = self.in_embed.weight.detach().cpu()
        lines = [f"{w.shape[0]} {w.shape[1]}"]
        lines += [word + " " + " ".join(f"{x:.6f}" for x in row.tolist()) for word, row in zip(words, w)]
        pathlib.Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
