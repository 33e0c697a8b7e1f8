"""Language evaluators: exact numbers, independent of batching and process count."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zoo.metrics.language import (
    ExactMatchEvaluator,
    LanguageModelEvaluator,
    MaskedLMEvaluator,
    NeighbourEvaluator,
)


def _feed(ev, logits, targets, bs):
    ev.reset()
    for i in range(0, len(logits), bs):
        ev.update(logits[i: i + bs], (None, targets[i: i + bs]))
    return ev.compute()


def test_lm_metrics_exact_and_batch_independent():
    torch.manual_seed(0)
    logits, targets = torch.randn(12, 7, 9), torch.randint(0, 9, (12, 7))
    ev = LanguageModelEvaluator()
    a, b = _feed(ev, logits, targets, 12), _feed(ev, logits, targets, 5)
    assert a == b
    loss = F.cross_entropy(logits.reshape(-1, 9).double(), targets.reshape(-1)).item()
    assert math.isclose(a["loss"], loss, rel_tol=1e-6)
    assert math.isclose(a["perplexity"], math.exp(loss), rel_tol=1e-6)
    assert math.isclose(a["bits_per_char"], loss / math.log(2), rel_tol=1e-6)
    # two characters per token halves bits per character
    two = _feed(LanguageModelEvaluator([2] * 9), logits, targets, 4)
    assert math.isclose(two["bits_per_char"], a["bits_per_char"] / 2, rel_tol=1e-12)


def test_lm_metrics_merge_equals_single_process():
    torch.manual_seed(1)
    logits, targets = torch.randn(10, 4, 6), torch.randint(0, 6, (10, 4))
    whole = _feed(LanguageModelEvaluator(), logits, targets, 3)
    parts = []
    for lo, hi in ((0, 4), (4, 10)):  # two ranks, contiguous shards
        ev = LanguageModelEvaluator()
        ev.update(logits[lo:hi], (None, targets[lo:hi]))
        parts.append(ev.state())
    merged = LanguageModelEvaluator()
    merged.merge(parts)
    assert merged.compute() == whole


def test_masked_lm_evaluator_scores_only_chosen_positions():
    logits = torch.zeros(2, 3, 5)
    logits[0, 1, 4] = 10.0
    labels = torch.tensor([[-100, 4, -100], [-100, -100, 2]])
    ev = MaskedLMEvaluator()
    ev.update((logits, torch.tensor([[1.0, 0.0], [0.0, 1.0]])),
              {"mlm_labels": labels, "nsp_label": torch.tensor([0, 0])})
    out = ev.compute()
    assert out["num_tokens"] == 2 and out["token_accuracy"] == 0.5
    assert out["nsp_accuracy"] == 0.5 and "bits_per_char" not in out


def test_exact_match_stops_at_eos_and_ignores_padding():
    ev = ExactMatchEvaluator(eos_id=2, pad_id=0, skip=1)
    targets = torch.tensor([[1, 5, 6, 2, 0], [1, 7, 2, 0, 0], [1, 5, 5, 5, 2]])
    preds = torch.tensor([[5, 6, 2, 9, 9],      # right; junk after <eos> is ignored
                          [7, 7, 2, 0, 0],      # wrong length
                          [5, 5, 6, 2, 0]])     # one wrong token
    ev.update(preds, (None, targets))
    out = ev.compute()
    assert out["exact_match"] == 1 / 3
    assert out["token_accuracy"] == (3 + 1 + 3) / (3 + 2 + 4)


def test_exact_match_for_tagging():
    ev = ExactMatchEvaluator(eos_id=None, pad_id=-100, skip=0)
    tags = torch.tensor([[0, 1, 1, -100], [1, 1, 0, 1]])
    ev.update(torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1]]), (None, tags))
    assert ev.compute() == {"exact_match": 0.5, "token_accuracy": 6 / 7, "num_samples": 2}


def test_neighbour_evaluator():
    clusters = torch.tensor([0, 0, 0, 1, 1, 1])
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    vec = centres[clusters] + 0.01 * torch.randn(6, 2)
    ev = NeighbourEvaluator()
    ev.update(vec[:4], (None, clusters[:4]))
    ev.update(vec[4:], (None, clusters[4:]))
    assert ev.compute()["neighbour_recall"] == 1.0
    ev.reset()
    # every word sits next to a word of the other cluster: pairs (0, 3), (1, 4), (2, 5) at
    # 0, 100 and 200 degrees, the second of each pair 2 degrees below (no ties, no noise)
    angles = torch.tensor([0.0, 100.0, 200.0, -2.0, 98.0, 198.0]).deg2rad()
    mixed = torch.stack([angles.cos(), angles.sin()], dim=1)
    ev.update(mixed, (None, clusters))
    out = ev.compute()
    assert out["top1_accuracy"] == 0.0 and out["neighbour_recall"] < 0.5
