"""Segmentation IoU/Dice: a hand-computed case, torchmetrics as an independent
reference, Dice losses against the metric, batch and process independence."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.errors import DataError
from zoo.metrics.segmentation import SegmentationEvaluator, dice_loss, soft_dice


def test_hand_computed_with_ignored_region_and_absent_class():
    target = torch.tensor([[[0, 0, 1, 255],
                            [1, 1, 2, 255]]])
    pred = torch.tensor([[[0, 1, 1, 3],     # the 3 and the 0 in the ignored column do not count
                          [1, 1, 0, 0]]])
    ev = SegmentationEvaluator(4, ["bg", "a", "b", "c"])
    ev.update(pred, (None, target))
    m = ev.compute()
    # class 0: I=1 P=2 T=2; class 1: I=3 P=4 T=3; class 2: I=0 P=0 T=1; class 3 absent
    assert m["per_class"]["bg"] == {"iou": pytest.approx(1 / 3), "dice": pytest.approx(1 / 2)}
    assert m["per_class"]["a"] == {"iou": pytest.approx(3 / 4), "dice": pytest.approx(6 / 7)}
    assert m["per_class"]["b"] == {"iou": 0.0, "dice": 0.0}
    assert m["per_class"]["c"] == {"iou": None, "dice": None}
    assert m["absent_classes"] == ["c"]
    assert m["miou"] == pytest.approx(13 / 36, abs=1e-15)
    assert m["mdice"] == pytest.approx(19 / 42, abs=1e-15)
    assert m["pixel_accuracy"] == pytest.approx(4 / 6, abs=1e-15)
    assert m["fw_iou"] == pytest.approx(35 / 72, abs=1e-15)
    assert m["num_pixels"] == 6
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 3, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


def test_logits_binary_logit_and_out_of_range_predictions():
    target = torch.tensor([[[0, 1], [1, 0]]])
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = torch.tensor([[0.0, 5.0], [5.0, 0.0]])
    logits[0, 0] = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    ev = SegmentationEvaluator(3)
    ev.update(logits, (None, target))
    assert ev.compute()["miou"] == 1.0
    ev = SegmentationEvaluator(2)
    ev.update(torch.tensor([[[[-1.0, 2.0], [3.0, -4.0]]]]), (None, target))  # (B, 1, H, W)
    assert ev.compute()["pixel_accuracy"] == 1.0
    # a prediction of 255 ("unlabelled") misses the true class and predicts nothing
    ev = SegmentationEvaluator(2)
    ev.update(torch.tensor([[[255, 1], [1, 0]]]), (None, target))
    m = ev.compute()
    assert m["per_class"]["0"]["iou"] == pytest.approx(1 / 2) and m["pixel_accuracy"] == 0.75


def test_bad_mask_value_and_shape():
    ev = SegmentationEvaluator(3)
    with pytest.raises(DataError, match="mask value 7"):
        ev.update(torch.zeros(1, 2, 2, dtype=torch.long), (None, torch.full((1, 2, 2), 7)))
    with pytest.raises(ValueError, match="shape"):
        ev.update(torch.zeros(1, 3, 4, 4), (None, torch.zeros(1, 2, 2, dtype=torch.long)))


@pytest.mark.parametrize("ignore", [0, -1, 255, None])
def test_any_ignore_index_equals_dropping_the_pixels(ignore):
    g = torch.Generator().manual_seed(5)
    target = torch.randint(0, 3, (2, 6, 7), generator=g)
    pred = torch.randint(0, 4, (2, 6, 7), generator=g)  # 3 is outside the classes: a miss
    drop = torch.rand(2, 6, 7, generator=g) < 0.3
    marked = target.masked_fill(drop, ignore) if ignore is not None else target
    ev = SegmentationEvaluator(3, ignore_index=ignore)
    ev.update(pred, (None, marked))
    keep = ~drop if ignore is not None else torch.ones_like(drop)
    if ignore == 0:
        keep &= target != 0  # class 0 pixels are ignored too
    want = torch.zeros(3, 4, dtype=torch.int64)
    for t, p in zip(target[keep].tolist(), pred[keep].tolist()):
        want[t, p] += 1
    assert torch.equal(ev.cm, want)
    with pytest.raises(DataError, match="mask value 5"):
        ev.update(pred, (None, marked.masked_fill(~drop & (target == 1), 5)))


def _random_batch(seed, n=4, c=5, size=24):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c - 1, (n, size, size), generator=g)  # class c-1 never appears
    target[:, :3, :5] = 255
    logits = torch.randn(n, c, size, size, generator=g)
    logits[:, c - 1] -= 10  # and is never predicted
    logits += 2.5 * torch.nn.functional.one_hot(target.clamp(max=c - 1), c).permute(0, 3, 1, 2)
    return logits, target


def test_against_torchmetrics():
    tm = pytest.importorskip("torchmetrics.classification")
    c = 5
    logits, target = _random_batch(0, c=c)
    ev = SegmentationEvaluator(c)
    ev.update(logits, (None, target))
    m = ev.compute()
    pred = logits.argmax(1)
    # torchmetrics scores a class absent everywhere as 0 (zero_division); we call it NaN
    # and leave it out, so compare per class and average over the present ones.
    iou = tm.MulticlassJaccardIndex(c, average="none", ignore_index=255)(pred, target)
    f1 = tm.MulticlassF1Score(c, average="none", ignore_index=255, multidim_average="global")(pred, target)
    acc = tm.MulticlassAccuracy(c, average="micro", ignore_index=255)(pred, target)
    assert m["absent_classes"] == [str(c - 1)]
    for k in range(c - 1):
        assert m["per_class"][str(k)]["iou"] == pytest.approx(float(iou[k]), abs=1e-6)
        assert m["per_class"][str(k)]["dice"] == pytest.approx(float(f1[k]), abs=1e-6)  # Dice = pixel F1
    assert m["miou"] == pytest.approx(float(iou[: c - 1].mean()), abs=1e-6)
    assert m["pixel_accuracy"] == pytest.approx(float(acc), abs=1e-6)


def test_batch_and_process_independence():
    logits, target = _random_batch(1, n=6)
    one = SegmentationEvaluator(5)
    one.update(logits, (None, target))
    expected = one.compute()
    for b in (1, 4):
        ev = SegmentationEvaluator(5)
        for i in range(0, 6, b):
            ev.update(logits[i:i + b], (None, target[i:i + b]))
        assert ev.compute() == expected
    states = []
    for lo, hi in ((0, 2), (2, 5), (5, 6)):
        ev = SegmentationEvaluator(5)
        ev.update(logits[lo:hi], (None, target[lo:hi]))
        states.append(ev.state())
    merged = SegmentationEvaluator(5)
    merged.merge(states)
    assert merged.compute() == expected


def test_dice_loss_agrees_with_metric_on_hard_masks():
    logits, target = _random_batch(2)
    pred = logits.argmax(1)
    pred[0, 0, 0] = 4  # predicted once, absent from the target: the metric scores it 0
    hard = 60.0 * torch.nn.functional.one_hot(pred, 5).permute(0, 3, 1, 2).float()
    ev = SegmentationEvaluator(5)
    ev.update(pred, (None, target))
    m = ev.compute()
    dice, scored = soft_dice(hard, target)
    for k in range(5):
        want = m["per_class"][str(k)]["dice"]
        assert bool(scored[k]) == (want is not None)
        if want is not None:
            assert float(dice[k]) == pytest.approx(want, abs=1e-5)
    assert 1 - float(dice_loss(hard, target)) == pytest.approx(m["mdice"], abs=1e-5)


def test_dice_loss_trains_and_handles_edge_cases():
    logits, target = _random_batch(3, n=2, size=8)
    logits = logits.clone().requires_grad_(True)
    opt = torch.optim.SGD([logits], lr=50.0)
    first = None
    for _ in range(30):
        loss = dice_loss(logits, target)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(logits.grad).all()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    # one binary logit channel
    t = torch.tensor([[[0, 1], [1, 1]]])
    x = torch.tensor([[[[-30.0, 30.0], [30.0, 30.0]]]], requires_grad=True)
    assert float(dice_loss(x, t).detach()) == pytest.approx(0.0, abs=1e-6)
    # everything ignored: zero loss, gradient still defined
    z = dice_loss(x, torch.full((1, 2, 2), 255))
    z.backward()
    assert float(z.detach()) == 0.0 and x.grad is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_counts_stay_on_the_gpu():
    logits, target = _random_batch(4)
    ev = SegmentationEvaluator(5)
    ev.update(logits.cuda(), (None, target.cuda()))
    assert ev.cm.device.type == "cuda"
    cpu = SegmentationEvaluator(5)
    cpu.update(logits, (None, target))
    assert ev.compute() == cpu.compute()


def test_empty_state():
    m = SegmentationEvaluator(2).compute()
    assert math.isnan(m["miou"]) and m["absent_classes"] == ["0", "1"]
