"""The segmentation losses against torch and the evaluator: CE with ignore_index and class
weights, Dice on hard masks = 1 - the evaluator's mDice, U-Net's edge weight map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.metrics.segmentation import SegmentationEvaluator
from zoo.models.segmentation.losses import (
    SegmentationLoss,
    label_components,
    median_frequency_weights,
    unet_weight_map,
)


def _hard_logits(labels: torch.Tensor, c: int) -> torch.Tensor:
    return F.one_hot(labels, c).permute(0, 3, 1, 2).float() * 1e4   # softmax = one-hot


def test_ce_matches_torch_with_ignore_and_class_weights():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 9, 7)
    target = torch.randint(0, 4, (2, 9, 7))
    target[0, :2] = 255
    w = [0.5, 1.0, 2.0, 3.0]
    got = SegmentationLoss("ce", class_weights=w)(logits, target)
    want = F.cross_entropy(logits, target, weight=torch.tensor(w), ignore_index=255)
    assert got == pytest.approx(float(want), abs=1e-6)
    assert SegmentationLoss("ce")(logits, torch.full_like(target, 255)) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dice_loss_on_hard_masks_is_one_minus_the_metric(seed):
    g = torch.Generator().manual_seed(seed)
    c = 5
    target = torch.randint(0, c - 1, (3, 16, 12), generator=g)   # class 4 absent from the target
    pred = torch.where(torch.rand(3, 16, 12, generator=g) < 0.7, target,
                       torch.randint(0, c - 1, (3, 16, 12), generator=g))   # ... and from pred
    target[0, 0] = 255
    ev = SegmentationEvaluator(c)
    ev.update(pred, (None, target))
    mdice = ev.compute()["mdice"]
    loss = SegmentationLoss("dice")(_hard_logits(pred, c), target)
    assert float(loss) == pytest.approx(1 - mdice, abs=1e-5)
    both = SegmentationLoss("ce_dice", dice_weight=2.0)(_hard_logits(pred, c), target)
    ce = SegmentationLoss("ce")(_hard_logits(pred, c), target)
    assert float(both) == pytest.approx(float(ce) + 2 * (1 - mdice), rel=1e-4)


def test_components_separate_classes_and_blobs():
    m = np.zeros((6, 8), dtype=np.int64)
    m[0:2, 0:2] = 1
    m[0:2, 2:4] = 2          # touches the first, another class: a second object
    m[4:6, 5:8] = 1          # same class, apart: a third
    m[5, 0] = 255
    objects, n = label_components(m)
    assert n == 3 and len(np.unique(objects)) == 4
    assert objects[5, 0] == 0


def test_edge_weight_is_highest_between_touching_objects():
    m = np.zeros((40, 40), dtype=np.int64)
    m[10:30, 4:18] = 1
    m[10:30, 20:34] = 2      # a 2-pixel gap (columns 18, 19) between the two objects
    m[0:3, 37:40] = 1        # a small object far away
    w = unet_weight_map(m, w0=10, sigma=3, area_weight=0)
    gap = w[10:30, 18:20]
    assert float(w.max()) == pytest.approx(float(gap.max()))
    assert gap.min() > 5                     # d1 + d2 = 2 or 3 px: near 1 + w0 exp(-..)
    assert w[35, 10] < 1.01                  # open background: about the class weight
    # the border term of one lone object is 0: it needs two objects
    lone = np.zeros((20, 20), dtype=np.int64)
    lone[5:10, 5:10] = 1
    assert np.allclose(unet_weight_map(lone, w0=10, sigma=3, area_weight=0), 1)
    # the inverse-area term raises the small object above the large ones
    wa = unet_weight_map(m, w0=0, area_weight=1, small_area=0.01)
    assert wa[1, 38] > wa[20, 10] > 1 and wa[35, 10] == 1
    # class weights are w_c; ignored pixels weigh 0
    m2 = m.copy()
    m2[39, 0] = 255
    wc = unet_weight_map(m2, w0=0, area_weight=0, class_weights=[0.5, 2, 3])
    assert wc[35, 10] == 0.5 and wc[20, 10] == 2 and wc[20, 25] == 3 and wc[39, 0] == 0


def test_edge_weighted_ce_is_ce_times_the_map():
    torch.manual_seed(0)
    target = torch.zeros(1, 40, 40, dtype=torch.int64)
    target[0, 10:30, 4:18] = 1
    target[0, 10:30, 20:34] = 2
    logits = torch.randn(1, 3, 40, 40)
    loss = SegmentationLoss("edge_weighted_ce", w0=10, sigma=3, area_weight=0)
    w = torch.from_numpy(unet_weight_map(target[0].numpy(), w0=10, sigma=3, area_weight=0))
    ce = F.cross_entropy(logits, target, reduction="none")[0]
    assert float(loss(logits, target)) == pytest.approx(float((ce * w).mean()), rel=1e-5)


def test_median_frequency_weights_by_hand():
    # class 0 in both maps (12 + 16 of 32 pixels), class 1 only in the first (4 of 16),
    # class 2 absent, 255 ignored
    a = torch.zeros(4, 4, dtype=torch.long)
    a[0] = 1
    b = torch.zeros(4, 5, dtype=torch.long)
    b[:, 4] = 255
    got = median_frequency_weights([a, b], 3)
    freq = np.array([28 / 32, 4 / 16])
    med = np.median(freq)
    assert got.tolist() == pytest.approx([med / freq[0], med / freq[1], 1.0])


def test_median_frequency_is_fitted_to_the_training_maps_and_kept_in_the_checkpoint(tmp_path):
    from types import SimpleNamespace

    from zoo.errors import UserError
    from zoo.models.segmentation.segnet import SegNet

    torch.manual_seed(0)
    maps = [torch.randint(0, 3, (8, 8)) for _ in range(4)]
    maps[0][:] = 0
    data = SimpleNamespace(dataset=lambda split: [(None, m) for m in maps],
                           meta={"class_names": ["background", "a", "b"]})
    model = SegNet(num_classes=3, widths=(4, 8), convs=(1, 1), class_weights="median_frequency")
    assert model.criterion.weights() == [1.0, 1.0, 1.0]
    model.on_train_start(data, str(tmp_path))
    want = median_frequency_weights(maps, 3)
    assert model.criterion.weights() == pytest.approx(want.tolist())
    assert (tmp_path / "class_weights.json").exists()
    logits, target = torch.randn(2, 3, 8, 8), maps[1][None].repeat(2, 1, 1)
    assert float(model.criterion(logits, target)) == pytest.approx(
        float(F.cross_entropy(logits, target, weight=want)), abs=1e-6)
    again = SegNet(num_classes=3, widths=(4, 8), convs=(1, 1), class_weights="median_frequency")
    again.load_state_dict(model.state_dict())          # what a resumed run or evaluate.py loads
    assert again.criterion.weights() == pytest.approx(want.tolist())
    with pytest.raises(UserError, match="median_frequency"):
        SegNet(num_classes=3, class_weights="median")
