"""YOLOv2's objectness loss at responsible slots, hand-computed, with and without rescore."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoo.models.detection.yolov2 import YOLOv2

SIZE = 64  # widths of 4 stages: stride 16, a 4x4 grid of 16 px cells


def _model(rescore):
    return YOLOv2(num_classes=2, image_size=SIZE, widths=(4, 4, 4, 4), head_width=4, passthrough_width=2,
                  anchors=[[0.25, 0.25]], kmeans_anchors=False, rescore=rescore)


def _logit(p):
    return math.log(p / (1 - p))


def _raw(box_t, obj_logit):
    """(1, 1, 4, 4, 7) raw output: every slot a 16 px box at its cell centre with objectness
    logit -3, and the slot of cell (0, 0) set to ``box_t`` and ``obj_logit``."""
    raw = torch.zeros(1, 1, 4, 4, 7)
    raw[..., 4] = -3.0
    raw[0, 0, 0, 0, :4] = torch.tensor(box_t)
    raw[0, 0, 0, 0, 4] = obj_logit
    return raw.requires_grad_()


# A 5x5 px object whose centre (12.5, 12.5) lies in cell (0, 0); its best (only) prior is 16 px.
GT = torch.tensor([[10.0, 10.0, 15.0, 15.0]])
LABELS = torch.tensor([1])
NOOBJ = 15 * F.softplus(torch.tensor(-3.0)).item()  # the 15 other slots, pushed to 0


def test_rescore_pushes_a_responsible_box_that_misses_towards_zero():
    # The predicted box: centre at the cell's top-left corner, ~0.0007 px wide: IoU 0.
    raw = _raw([-10.0, -10.0, -10.0, -10.0], 0.7)
    out = _model(rescore=True).loss(raw, [GT], [LABELS], SIZE)
    # BCE towards the IoU, 0: softplus(0.7). Without it the slot got no objectness loss at all.
    assert out["loss_obj"].item() == pytest.approx(F.softplus(torch.tensor(0.7)).item(), rel=1e-6)
    assert out["loss_noobj"].item() == pytest.approx(NOOBJ, rel=1e-6)
    out["loss_obj"].backward()
    assert raw.grad[0, 0, 0, 0, 4] == pytest.approx(torch.sigmoid(torch.tensor(0.7)).item(), rel=1e-6)
    # without rescore the same slot is pushed towards 1
    out = _model(rescore=False).loss(_raw([-10.0, -10.0, -10.0, -10.0], 0.7), [GT], [LABELS], SIZE)
    assert out["loss_obj"].item() == pytest.approx(F.softplus(torch.tensor(-0.7)).item(), rel=1e-6)


def test_rescore_target_is_the_predicted_iou():
    # Predicted box (11, 10, 16, 15): the object shifted by one pixel, IoU = 20 / 30.
    t = [_logit(13.5 / 16), _logit(12.5 / 16), math.log(5 / 16), math.log(5 / 16)]
    out = _model(rescore=True).loss(_raw(t, 0.2), [GT], [LABELS], SIZE)
    iou = 2 / 3
    want = F.binary_cross_entropy_with_logits(torch.tensor(0.2), torch.tensor(iou)).item()
    assert out["loss_obj"].item() == pytest.approx(want, rel=1e-5)
    assert out["loss_noobj"].item() == pytest.approx(NOOBJ, rel=1e-6)
