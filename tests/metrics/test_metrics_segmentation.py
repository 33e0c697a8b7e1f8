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
    pred = torch.randint(0, 4, (2, 6, 7), generator=g)  # 3 stands for "unlabelled": a miss
    drop = torch.rand(2, 6, 7, generator=g) < 0.3
    marked = target.masked_fill(drop, ignore) if ignore is not None else target
    if ignore is None or 0 <= ignore < 3:  # no value outside the classes may be predicted
        pred = pred.clamp(max=2)
    else:
        pred = pred.masked_fill(pred == 3, ignore)
    ev = SegmentationEvaluator(3, ignore_index=ignore)
    ev.update(pred, (None, marked))
    keep = ~drop if ignore is not None else torch.ones_like(drop)
    if ignore == 0:
        keep &= target != 0  # class 0 pixels are ignored too
    want = torch.zeros(3, 4, dtype=torch.int64)
    for t, p in zip(target[keep].tolist(), pred[keep].tolist()):
        want[t, p if 0 <= p < 3 else 3] += 1
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
    # A class absent everywhere is NaN here and left out of the mean; torchmetrics' macro
    # average gives it weight 0: the same mIoU.
    iou = tm.MulticlassJaccardIndex(c, average="none", ignore_index=255)(pred, target)
    miou = tm.MulticlassJaccardIndex(c, average="macro", ignore_index=255)(pred, target)
    assert m["miou"] == pytest.approx(float(miou), abs=1e-6)
    f1 = tm.MulticlassF1Score(c, average="none", ignore_index=255, multidim_average="global")(pred, target)
    acc = tm.MulticlassAccuracy(c, average="micro", ignore_index=255)(pred, target)
    assert m["absent_classes"] == [str(c - 1)]
    for k in range(c - 1):
        assert m["per_class"][str(k)]["iou"] == pytest.approx(float(iou[k]), abs=1e-6)
        assert m["per_class"][str(k)]["dice"] == pytest.approx(float(f1[k]), abs=1e-6)  # Dice = pixel F1
    assert m["miou"] == pytest.approx(float(iou[: c - 1].mean()), abs=1e-6)
    assert m["pixel_accuracy"] == pytest.approx(float(acc), abs=1e-6)


def test_ignore_index_inside_the_classes_is_not_scored():
    tm = pytest.importorskip("torchmetrics.classification")
    from sklearn.metrics import confusion_matrix, jaccard_score

    c = 4
    g = torch.Generator().manual_seed(7)
    target = torch.randint(0, 3, (2, 9, 9), generator=g)      # class 3 never true
    pred = torch.randint(0, 3, (2, 9, 9), generator=g)        # nor predicted: absent
    ev = SegmentationEvaluator(c, ignore_index=0)
    ev.update(pred, (None, target))
    m = ev.compute()
    assert m["per_class"]["0"] == {"iou": None, "dice": None}
    assert m["absent_classes"] == ["3"]  # 0 is ignored, not absent
    iou = tm.MulticlassJaccardIndex(c, average="none", ignore_index=0)(pred, target)
    miou = tm.MulticlassJaccardIndex(c, average="macro", ignore_index=0)(pred, target)
    f1 = tm.MulticlassF1Score(c, average="none", ignore_index=0, multidim_average="global")(pred, target)
    assert m["miou"] == pytest.approx(float(miou), abs=1e-6)
    for k in (1, 2):
        assert m["per_class"][str(k)]["iou"] == pytest.approx(float(iou[k]), abs=1e-6)
        assert m["per_class"][str(k)]["dice"] == pytest.approx(float(f1[k]), abs=1e-6)
    assert m["mdice"] == pytest.approx(float(f1[1:3].mean()), abs=1e-6)
    # scikit-learn on the pixels that count: the same matrix and per-class IoU
    keep = (target != 0).reshape(-1).numpy()
    t, p = target.reshape(-1).numpy()[keep], pred.reshape(-1).numpy()[keep]
    assert m["confusion_matrix"] == confusion_matrix(t, p, labels=range(c)).tolist()
    ref = jaccard_score(t, p, labels=[1, 2], average=None)
    assert [m["per_class"][k]["iou"] for k in ("1", "2")] == pytest.approx(ref.tolist(), abs=1e-12)
    # predicting the ignored class on another class's pixel stays a miss of that class
    assert sum(m["confusion_matrix"][k][0] for k in (1, 2)) > 0
    # the soft Dice loss leaves the ignored class out too, so it still equals the metric
    logits = 20.0 * torch.nn.functional.one_hot(pred, c).permute(0, 3, 1, 2).float()
    assert 1 - float(dice_loss(logits, target, ignore_index=0)) == pytest.approx(m["mdice"], abs=1e-5)


def test_more_channels_than_classes_and_predicted_values_out_of_range():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    for channels in (5, 3):
        with pytest.raises(DataError, match=f"predictions have {channels} channels but num_classes is 4"):
            SegmentationEvaluator(4).update(torch.randn(1, channels, 2, 2), (None, target))
    with pytest.raises(DataError, match="1 channels but num_classes is 3"):
        SegmentationEvaluator(3).update(torch.randn(1, 1, 2, 2), (None, target))
    for bad in (4, 7, -2):
        with pytest.raises(DataError, match=f"predicted label {bad} is neither a class in 0..3"):
            SegmentationEvaluator(4).update(torch.tensor([[[0, 1], [bad, 2]]]), (None, target))
    with pytest.raises(DataError, match="predicted label 255 .* ignore index None"):
        SegmentationEvaluator(4, ignore_index=None).update(torch.tensor([[[0, 1], [255, 2]]]), (None, target))
    # ignore_index itself is an "unlabelled" prediction, and a bad value on an ignored pixel does not count
    ev = SegmentationEvaluator(4)
    ev.update(torch.tensor([[[0, 255], [9, 0]]]), (None, torch.tensor([[[0, 0], [255, 0]]])))
    assert ev.compute()["confusion_matrix"][0] == [2, 0, 0, 0] and int(ev.cm[0, 4]) == 1


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
