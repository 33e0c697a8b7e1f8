"""The YOLOv1 sum-squared loss on a hand-built target equals the hand-computed value."""

from __future__ import annotations

import pytest
import torch

from zoo.models.detection.yolov1 import yolov1_loss


def test_yolov1_loss_matches_hand_computation():
    # S = 2, B = 2, C = 2 on a 64 px image: 32 px cells.
    s, nb, c, size = 2, 2, 2, 64
    pred = torch.zeros(2, s, s, 5 * nb + c)
    pred[..., 4] = 0.2   # box 0 confidence everywhere
    pred[..., 9] = 0.2   # box 1 confidence everywhere
    pred[..., 10:] = 0.5
    # Image 0: one object, xyxy (8, 8, 24, 40) of class 2. Its centre (16, 24) lies in
    # cell (row 0, col 0) at offset (0.5, 0.75); w = 16/64, h = 32/64.
    truth = torch.tensor([[8.0, 8.0, 24.0, 40.0]])
    # Box 0 of that cell: x off by 0.1 -> decoded (11.2, 8, 27.2, 40), IoU = 409.6/614.4 = 2/3.
    pred[0, 0, 0, 0:5] = torch.tensor([0.6, 0.75, 0.5, 0.5 ** 0.5, 0.8])
    # Box 1: a tiny box elsewhere in the cell, IoU 0 -> box 0 is responsible.
    pred[0, 0, 0, 5:10] = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.3])
    pred[0, 0, 0, 10:] = torch.tensor([0.3, 0.7])
    # Image 1: no objects; every confidence is 0.5.
    pred[1, ..., 4] = 0.5
    pred[1, ..., 9] = 0.5

    out = yolov1_loss(pred, [truth, torch.zeros(0, 4)], [torch.tensor([2]), torch.zeros(0, dtype=torch.long)],
                      num_boxes=nb, size=size, lambda_coord=5.0, lambda_noobj=0.5)

    coord = 5.0 * 0.1 ** 2                        # only x is off
    obj = (0.8 - 2 / 3) ** 2                      # confidence target: IoU with the truth
    noobj = 0.5 * (0.3 ** 2 + 6 * 0.2 ** 2        # image 0: box 1 of cell 0, 6 boxes elsewhere
                   + 8 * 0.5 ** 2)                # image 1: all 8 boxes
    cls = (0.3 - 0) ** 2 + (0.7 - 1) ** 2         # only the object's cell
    assert float(out["loss_box"]) == pytest.approx(coord / 2, rel=1e-5)
    assert float(out["loss_obj"]) == pytest.approx(obj / 2, rel=1e-5)
    assert float(out["loss_noobj"]) == pytest.approx(noobj / 2, rel=1e-5)
    assert float(out["loss_cls"]) == pytest.approx(cls / 2, rel=1e-5)
    assert float(sum(out.values())) == pytest.approx((coord + obj + noobj + cls) / 2, rel=1e-5)


def test_yolov1_responsible_box_is_the_best_overlap():
    s, nb, c, size = 2, 2, 1, 64
    pred = torch.zeros(1, s, s, 5 * nb + c)
    truth = torch.tensor([[8.0, 8.0, 24.0, 40.0]])
    pred[0, 0, 0, 0:4] = torch.tensor([0.1, 0.1, 0.1, 0.1])           # box 0 misses
    pred[0, 0, 0, 5:9] = torch.tensor([0.5, 0.75, 0.5, 0.5 ** 0.5])   # box 1 is exact
    pred[0, 0, 0, 9] = 1.0                                            # conf = IoU = 1
    out = yolov1_loss(pred, [truth], [torch.tensor([1])], num_boxes=nb, size=size)
    assert float(out["loss_box"]) == pytest.approx(0.0, abs=1e-10)
    assert float(out["loss_obj"]) == pytest.approx(0.0, abs=1e-10)


def test_yolov1_one_object_per_cell_keeps_the_largest():
    s, nb, c, size = 2, 1, 2, 64
    pred = torch.zeros(1, s, s, 5 * nb + c)
    small = [10.0, 10.0, 14.0, 14.0]
    large = [2.0, 2.0, 30.0, 30.0]          # same cell (0, 0)
    pred[0, 0, 0, :4] = torch.tensor([0.5, 0.5, (28 / 64) ** 0.5, (28 / 64) ** 0.5])
    out = yolov1_loss(pred, [torch.tensor([small, large])], [torch.tensor([1, 2])],
                      num_boxes=nb, size=size)
    assert float(out["loss_box"]) == pytest.approx(0.0, abs=1e-8)   # matched to the large box
    assert float(out["loss_cls"]) == pytest.approx(1.0, abs=1e-6)   # target class 2 only
