"""Language metrics: loss, perplexity and bits per character of language models;
exact-match and token accuracy of sequence-to-sequence outputs; nearest-neighbour
recovery of planted word clusters.

State is per-token losses (reduced once, in float64, in ``compute``) or integer
counts, so results do not depend on batch size or the number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zoo.metrics.base import Evaluator

IGNORE_INDEX = -100


def token_nll(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token negative log-likelihood (nats) of the kept targets, and those targets.

    logits (..., V), targets (...); positions equal to ``ignore_index`` are dropped.
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    logits, targets = logits[keep], targets[keep]
    nll = F.cross_entropy(logits, targets, reduction="none")
    return nll, targets


class LanguageModelEvaluator(Evaluator):
    """Cross-entropy ``loss`` (nats per token), ``perplexity`` = exp(loss) and
    ``bits_per_char`` = total nats / ln 2 / characters of the targets.

    ``update(logits, batch)``: logits (B, T, V) and a batch ``(inputs, targets)`` with
    int64 targets (B, T) (``-100`` = not scored). ``chars_per_token`` gives the number of
    characters each token id stands for (all ones for a character tokenizer); without it
    bits per character equals bits per token.
    """

    state_keys = ("nll", "chars", "correct")

    def __init__(self, chars_per_token: Sequence[int] | None = None) -> None:
        self.chars_per_token = (torch.tensor(list(chars_per_token), dtype=torch.int64)
                                if chars_per_token is not None else None)
        super().__init__()

    def reset(self) -> None:
        self.nll: list[torch.Tensor] = []        # per-token float32 losses, in data order
        self.chars = torch.zeros((), dtype=torch.int64)
        self.correct = torch.zeros((), dtype=torch.int64)

    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        self.update_tokens(predictions, batch[1])

    def update_tokens(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        logits, targets = logits.detach(), targets.detach().to(logits.device)
        nll, kept = token_nll(logits, targets)
        self.nll.append(nll.cpu())
        kept = kept.cpu()
        if self.chars_per_token is not None:
            self.chars += self.chars_per_token[kept].sum()
        else:
            self.chars += kept.numel()
        pred = logits.reshape(-1, logits.shape[-1])[targets.reshape(-1) != IGNORE_INDEX].argmax(-1)
        self.correct += (pred.cpu() == kept).sum()

    def compute(self) -> dict[str, Any]:
        nll = torch.cat(self.nll).double() if self.nll else torch.zeros(0, dtype=torch.float64)
        n = nll.numel()
        total = float(nll.sum())
        loss = total / max(n, 1)
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 700.0)),
            "bits_per_char": total / math.log(2) / max(int(self.chars), 1),
            "token_accuracy": int(self.correct) / max(n, 1),
            "num_tokens": n,
        }


class MaskedLMEvaluator(LanguageModelEvaluator):
    """BERT pre-training: masked-token ``loss``/``perplexity``/``token_accuracy`` over the
    chosen (masked) positions and next-sentence ``nsp_accuracy``.

    ``update((mlm_logits (B, T, V), nsp_logits (B, 2)), batch)`` with batch keys
    ``mlm_labels`` (B, T; -100 where not chosen) and ``nsp_label`` (B,).
    """

    state_keys = LanguageModelEvaluator.state_keys + ("nsp_correct", "nsp_total")

    def reset(self) -> None:
        super().reset()
        self.nsp_correct = torch.zeros((), dtype=torch.int64)
        self.nsp_total = torch.zeros((), dtype=torch.int64)

    def update(self, predictions: tuple[torch.Tensor, torch.Tensor],
               batch: dict[str, torch.Tensor]) -> None:
        mlm_logits, nsp_logits = predictions
        self.update_tokens(mlm_logits, batch["mlm_labels"])
        nsp = nsp_logits.detach().argmax(-1).cpu()
        self.nsp_correct += (nsp == batch["nsp_label"].cpu()).sum()
        self.nsp_total += nsp.numel()

    def compute(self) -> dict[str, Any]:
        out = super().compute()
        del out["bits_per_char"]  # only masked positions are scored: not a text compression rate
        out["nsp_accuracy"] = int(self.nsp_correct) / max(int(self.nsp_total), 1)
        return out


def strip_sequence(ids: Sequence[int], eos_id: int | None, pad_id: int | None) -> list[int]:
    """Tokens up to and including the first ``eos_id``, without ``pad_id`` tokens."""
    out = []
    for t in ids:
        t = int(t)
        if pad_id is not None and t == pad_id:
            continue
        out.append(t)
        if eos_id is not None and t == eos_id:
            break
    return out


class ExactMatchEvaluator(Evaluator):
    """Sequence ``exact_match`` (every output token right, including the end token) and
    ``token_accuracy`` (position-wise matches over the reference length).

    ``update(pred_ids, batch)``: pred_ids (B, L) int64, the decoded outputs without the
    start token (anything after the first ``eos_id`` is ignored); the reference is
    ``batch[1][:, skip:]`` cut the same way. Sequence-to-sequence tasks use
    ``skip=1`` (their targets start with ``<bos>``); per-step tagging uses ``skip=0``,
    no end token and ``pad_id=-100``.
    """

    state_keys = ("exact", "total", "tok_correct", "tok_total")

    def __init__(self, eos_id: int | None = 2, pad_id: int | None = 0, skip: int = 1) -> None:
        self.eos_id, self.pad_id, self.skip = eos_id, pad_id, int(skip)
        super().__init__()

    def reset(self) -> None:
        self.exact = 0
        self.total = 0
        self.tok_correct = 0
        self.tok_total = 0

    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        refs = batch[1][:, self.skip:].detach().cpu().tolist()
        preds = predictions.detach().cpu().tolist()
        for p, r in zip(preds, refs):
            r = strip_sequence(r, self.eos_id, self.pad_id)
            if self.pad_id is not None and self.eos_id is None:
                # tagging: pad marks unscored positions, keep alignment with the prediction
                p = p[:len(r)]
            else:
                p = strip_sequence(p, self.eos_id, self.pad_id)
            self.exact += int(p == r)
            self.total += 1
            self.tok_correct += sum(int(a == b) for a, b in zip(p, r))
            self.tok_total += len(r)

    def compute(self) -> dict[str, Any]:
        return {
            "exact_match": self.exact / max(self.total, 1),
            "token_accuracy": self.tok_correct / max(self.tok_total, 1),
            "num_samples": self.total,
        }


class NeighbourEvaluator(Evaluator):
    """Planted-cluster recovery of word embeddings: for every word of a planted cluster of
    size m, the share of its m-1 nearest neighbours (cosine similarity, among all scored
    words) that belong to its own cluster; ``neighbour_recall`` averages it over words, and
    ``top1_accuracy`` is the share of words whose single nearest neighbour is in-cluster.

    ``update(vectors, batch)``: vectors (B, D) for the word ids ``batch[0]`` whose cluster
    ids are ``batch[1]``.
    """

    state_keys = ("vectors", "clusters")

    def reset(self) -> None:
        self.vectors: list[torch.Tensor] = []
        self.clusters: list[torch.Tensor] = []

    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        self.vectors.append(predictions.detach().float().cpu())
        self.clusters.append(batch[1].detach().cpu())

    def compute(self) -> dict[str, Any]:
        v = F.normalize(torch.cat(self.vectors).double(), dim=1)
        c = torch.cat(self.clusters)
        sim = v @ v.T
        sim.fill_diagonal_(-float("inf"))  # a word is not its own neighbour
        same = c[:, None] == c[None, :]
        sizes = same.sum(1) - 1  # (N,) other members of each word's cluster
        order = sim.argsort(dim=1, descending=True)
        hits_sorted = same.gather(1, order)  # (N, N) in-cluster flags by rank
        ranks = torch.arange(len(c))[None, :]
        recall = (hits_sorted & (ranks < sizes[:, None])).sum(1).double() / sizes.clamp(min=1)
        return {
            "neighbour_recall": float(recall.mean()),
            "top1_accuracy": float(hits_sorted[:, 0].double().mean()),
            "num_words": len(c),
        }
