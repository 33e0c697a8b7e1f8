"""Classification and regression evaluators: scikit-learn as the reference, batch and
process independence, and a real two-process gather for every evaluator here."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from zoo.metrics.classification import ClassificationEvaluator
from zoo.metrics.regression import RegressionEvaluator


def _data(seed=0, n=300, c=7):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) + 1.5 * torch.nn.functional.one_hot(y, c)
    return logits, y


def test_against_sklearn():
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    logits, y = _data()
    ev = ClassificationEvaluator(7, topk=(3, 5))
    ev.update(logits, (None, y))
    m = ev.compute()
    pred = logits.argmax(1).numpy()
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-15)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    p, r, _, _ = precision_recall_fscore_support(y, pred, zero_division=0)
    for i in range(7):
        assert m["per_class"][str(i)]["recall"] == pytest.approx(r[i], abs=1e-12)
        assert m["per_class"][str(i)]["precision"] == pytest.approx(p[i], abs=1e-12)
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert m["absent_classes"] == []


@pytest.mark.parametrize("k", [3, 5])
def test_topk_against_sklearn_and_a_hand_loop(k):
    from sklearn.metrics import top_k_accuracy_score

    logits, y = _data(seed=3, c=7)
    ev = ClassificationEvaluator(7, topk=(3, 5))
    ev.update(logits, (None, y))
    m = ev.compute()
    ref = top_k_accuracy_score(y.numpy(), logits.numpy(), k=k, labels=np.arange(7))
    # hand loop: a hit when fewer than k classes score strictly higher than the true one
    rows = logits.tolist()
    hand = sum(sum(v > r[t] for v in r) < k for r, t in zip(rows, y.tolist())) / len(rows)
    assert m[f"top{k}_accuracy"] == pytest.approx(ref, abs=1e-15)
    assert m[f"top{k}_accuracy"] == pytest.approx(hand, abs=1e-15)
    assert 0.5 < m[f"top{k}_accuracy"] < 1.0  # neither trivial nor the plain accuracy
    assert m[f"top{k}_accuracy"] > m["accuracy"]


def test_absent_classes_are_left_out_of_macro_averages_as_sklearn_and_torchmetrics():
    from sklearn.metrics import f1_score, precision_score, recall_score

    tm = pytest.importorskip("torchmetrics.classification")
    # classes 0..5; 4 is never true nor predicted; 5 is predicted but never true; 3 true, never predicted
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 1])
    pred = torch.tensor([0, 1, 1, 1, 2, 0, 0, 2, 5, 1])
    ev = ClassificationEvaluator(6, topk=())
    ev.update(pred, (None, y))
    m = ev.compute()
    for key, fn, tm_cls in (("macro_f1", f1_score, tm.MulticlassF1Score),
                            ("macro_precision", precision_score, tm.MulticlassPrecision),
                            ("macro_recall", recall_score, tm.MulticlassRecall)):
        ref = fn(y.numpy(), pred.numpy(), average="macro", zero_division=0)  # labels inferred
        assert m[key] == pytest.approx(ref, abs=1e-12), key
        assert m[key] == pytest.approx(float(tm_cls(6, average="macro")(pred, y)), abs=1e-6), key
        # counting class 4 as zero (labels=range(6)) would give a lower number
        assert m[key] > fn(y.numpy(), pred.numpy(), labels=range(6), average="macro", zero_division=0)
    assert m["absent_classes"] == ["4"]
    assert m["per_class"]["4"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert m["per_class"]["5"]["precision"] == 0.0 and m["per_class"]["3"]["recall"] == 0.0


def test_plots(tmp_path):
    logits, y = _data(5, n=50, c=3)
    ev = ClassificationEvaluator(3, ["a", "b", "c"])
    ev.update(logits, (None, y))
    ev.compute()
    for path in ev.save_plots(tmp_path):
        assert path.stat().st_size > 1000


def test_batch_and_process_independence():
    logits, y = _data(1)
    one = ClassificationEvaluator(7)
    one.update(logits, (None, y))
    expected = one.compute()
    ev = ClassificationEvaluator(7)
    for i in range(0, 300, 17):
        ev.update(logits[i:i + 17], (None, y[i:i + 17]))
    assert ev.compute() == expected
    states = []
    for lo, hi in ((0, 100), (100, 250), (250, 300)):
        e = ClassificationEvaluator(7)
        e.update(logits[lo:hi], (None, y[lo:hi]))
        states.append(e.state())
    merged = ClassificationEvaluator(7)
    merged.merge(states)
    assert merged.compute() == expected


def test_regression_against_sklearn():
    from sklearn.metrics import mean_squared_error, r2_score

    g = torch.Generator().manual_seed(0)
    t = torch.randn(50, generator=g)
    p = t + 0.3 * torch.randn(50, generator=g)
    ev = RegressionEvaluator()
    for i in range(0, 50, 8):
        ev.update(p[i:i + 8], (None, t[i:i + 8]))
    m = ev.compute()
    t64, p64 = t.double().numpy(), p.double().numpy()  # sklearn reduces in the input's precision
    assert m["mse"] == pytest.approx(mean_squared_error(t64, p64), rel=1e-12)
    assert m["r2"] == pytest.approx(r2_score(t64, p64), rel=1e-12)


# -- a real gather over two processes (gloo) ------------------------------------------------

def _evaluators():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from coco_synth import random_detection_set

    from zoo.metrics.detection import DetectionEvaluator
    from zoo.metrics.segmentation import SegmentationEvaluator

    logits, y = _data(2, n=40)
    preds, targets = random_detection_set(7, 10, 3)
    seg_logits = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    seg_target = torch.randint(0, 3, (6, 8, 8), generator=torch.Generator().manual_seed(4))
    return [
        (ClassificationEvaluator(7), logits, (None, y)),
        (DetectionEvaluator(3), preds, (None, targets)),
        (SegmentationEvaluator(3), seg_logits, (None, seg_target)),
    ]


def _shard(x, rank, world):
    n = len(x[1]) if isinstance(x, tuple) else len(x)
    lo, hi = n * rank // world, n * (rank + 1) // world  # contiguous, unpadded
    if isinstance(x, tuple):
        return (None, x[1][lo:hi])
    return x[lo:hi]


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = []
        for ev, preds, batch in _evaluators():
            ev.update(_shard(preds, rank, world), _shard(batch, rank, world))
            ev.gather()
            results.append(ev.compute())
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def test_two_process_gather_equals_one_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "res.pt")
    mp.spawn(_worker, args=(2, port, out), nprocs=2, join=True)
    gathered = torch.load(out, weights_only=False)
    for (ev, preds, batch), got in zip(_evaluators(), gathered):
        ev.update(preds, batch)
        want = ev.compute()
        assert got.keys() == want.keys()
        for k in want:
            if isinstance(want[k], float) and np.isnan(want[k]):
                assert np.isnan(got[k])
            else:
                assert got[k] == want[k], k
