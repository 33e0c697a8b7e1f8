"""Box coding, decoding and anchors: YOLOv1 / YOLOv2 / SSD round trips, k-means priors,
NMS decoding and the one-object-per-slot rule."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.models.detection.boxes import kmeans_anchors, postprocess, select_unique, wh_iou
from zoo.models.detection.yolov1 import yolov1_decode, yolov1_encode
from zoo.models.detection.yolov2 import YOLOv2

BOXES = torch.tensor([[3.0, 5.0, 20.0, 40.0], [60.0, 61.0, 127.0, 100.0], [0.5, 90.0, 12.0, 127.5],
                      [40.0, 10.0, 90.0, 30.0]])


def test_yolov1_round_trip():
    s, size = 8, 128
    row, col, t = yolov1_encode(BOXES, s, size)
    assert ((t[:, :2] >= 0) & (t[:, :2] < 1)).all()
    params = torch.zeros(1, s, s, 1, 4)
    params[0, row, col, 0] = t
    dec = yolov1_decode(params, size)[0, row, col, 0]
    torch.testing.assert_close(dec, BOXES, atol=1e-4, rtol=0)


def test_yolov2_round_trip():
    torch.manual_seed(0)
    model = YOLOv2(num_classes=3, image_size=128)
    s = 128 // model.stride
    a, row, col, t, _ = model.encode(BOXES, 128, s)
    raw = torch.zeros(1, model.num_anchors, s, s, 8)
    raw[0, a, row, col, :2] = torch.logit(t[:, :2])  # sigmoid(t_x) is the cell offset
    raw[0, a, row, col, 2:4] = t[:, 2:4]
    dec = model.decode_boxes(raw, 128)[0, a, row, col]
    torch.testing.assert_close(dec, BOXES, atol=1e-3, rtol=0)
    # The responsible prior is the one of best shape IoU.
    wh = BOXES[:, 2:] - BOXES[:, :2]
    assert torch.equal(a, wh_iou(wh, model.anchors * 128).argmax(1))


def _ssd_default_boxes(grids, size, scales, ratios):
    """The SSD paper's default boxes (sec. 2.2), one hand loop: map k of f_h x f_w cells has, at
    each cell centre ((j + .5) / f_w, (i + .5) / f_h), boxes of side s_k and sqrt(s_k s_k+1) and
    (s_k sqrt(r), s_k / sqrt(r)) and its transpose for each extra ratio r; sides clipped to 1.
    xyxy pixels, maps in order, cells row-major, boxes in that order."""
    out = []
    for k, (fh, fw) in enumerate(grids):
        s = scales[k]
        sides = [(s, s), (math.sqrt(s * scales[k + 1]),) * 2]
        for r in ratios[k]:
            sides += [(s * math.sqrt(r), s / math.sqrt(r)), (s / math.sqrt(r), s * math.sqrt(r))]
        for i in range(fh):
            for j in range(fw):
                cx, cy = (j + 0.5) / fw * size, (i + 0.5) / fh * size
                for w, h in sides:
                    w, h = min(w, 1.0) * size, min(h, 1.0) * size
                    out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return torch.tensor(out)


def test_ssd_round_trip():
    from torchvision.models.detection.image_list import ImageList
    from torchvision.ops import box_iou

    from zoo.models.detection.ssd import SSD

    torch.manual_seed(0)
    scales, ratios = (0.07, 0.15, 0.3, 0.5, 0.75, 0.95), ((2,), (2, 3), (2, 3), (2,), (2,))
    model = SSD(num_classes=3, image_size=128, anchor_scales=scales, aspect_ratios=ratios).eval()
    net = model.net
    x = torch.rand(1, 3, 128, 128)
    feats = list(net.backbone(x).values())
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    anchors = net.anchor_generator(ImageList(x, [(128, 128)]), feats)[0]
    # The default boxes are the paper's, at the configured scales and ratios, in the order the
    # head's outputs are laid out: nonsense anchors would still round-trip below.
    want = _ssd_default_boxes([f.shape[-2:] for f in feats], 128, scales, ratios)
    torch.testing.assert_close(anchors, want, atol=1e-4, rtol=0)
    best_iou, best = box_iou(BOXES, anchors).max(1)
    assert (best_iou > 0.4).all()  # every test box has a default box of about its place and shape
    # Each true box coded against its default box comes back through the model's own
    # post-processing (decode, score, NMS) as a detection of its class.
    codes = net.box_coder.encode_single(BOXES, anchors[best])
    reg = torch.zeros(1, len(anchors), 4)
    reg[0, best] = codes
    logits = torch.full((1, len(anchors), 4), -20.0)
    logits[..., 0] = 20.0  # background everywhere ...
    labels = torch.tensor([1, 2, 3, 1])
    logits[0, best] = -20.0
    logits[0, best, labels] = 20.0  # ... except at the matched default boxes
    det = net.postprocess_detections({"bbox_regression": reg, "cls_logits": logits}, [anchors],
                                     [(128, 128)])[0]
    assert len(det["boxes"]) == len(BOXES)
    match = box_iou(BOXES, det["boxes"]).argmax(1)
    torch.testing.assert_close(det["boxes"][match], BOXES.clamp(0, 128), atol=1e-3, rtol=0)
    assert torch.equal(det["labels"][match], labels)


def test_kmeans_recovers_planted_shapes():
    g = torch.Generator().manual_seed(0)
    planted = torch.tensor([[0.05, 0.05], [0.30, 0.12], [0.15, 0.45], [0.6, 0.6]])
    wh = torch.cat([c * (1 + 0.05 * torch.randn(300, 2, generator=g)) for c in planted])
    got = kmeans_anchors(wh, 4, seed=1)
    order = planted.prod(1).argsort()
    torch.testing.assert_close(got, planted[order], atol=0.01, rtol=0.05)
    assert wh_iou(wh, got).max(1).values.mean() > 0.85


def test_kmeans_more_anchors_than_shapes_has_no_nan():
    wh = torch.tensor([[0.1, 0.1]] * 5 + [[0.5, 0.2]] * 5)
    got = kmeans_anchors(wh, 5)
    assert torch.isfinite(got).all() and got.shape == (5, 2)
    # Every centroid is one of the two shapes (duplicates allowed), both are present.
    d = (got[:, None] - torch.tensor([[0.1, 0.1], [0.5, 0.2]])[None]).abs().amax(-1)
    assert (d.min(1).values < 1e-6).all() and (d.min(0).values < 1e-6).all()


def test_select_unique_keeps_highest_priority():
    keys = torch.tensor([3, 1, 3, 2, 1])
    prio = torch.tensor([1.0, 5.0, 9.0, 2.0, 4.0])
    assert sorted(select_unique(keys, prio).tolist()) == [1, 2, 3]


def test_postprocess_per_class_nms_and_limits():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.0]])
    # Two overlapping boxes of class 1, one far box of class 1, and box 3 scored as class 2.
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0], [0.0, 0.6]])
    out = postprocess(boxes, scores, score_thresh=0.05, nms_thresh=0.5, max_detections=10,
                      width=100, height=100)
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert out["labels"].tolist() == [1, 1, 2]  # NMS never suppresses across classes
    out = postprocess(boxes, scores, score_thresh=0.05, nms_thresh=0.5, max_detections=2,
                      width=100, height=100)
    assert len(out["boxes"]) == 2
    # Clipping to the image, and nothing above the threshold gives empty (0, 4) boxes.
    out = postprocess(torch.tensor([[-5.0, -5, 20, 20]]), torch.tensor([[0.5]]), score_thresh=0.1,
                      nms_thresh=0.5, max_detections=5, width=15, height=15)
    assert out["boxes"].tolist() == [[0, 0, 15, 15]]
    out = postprocess(boxes, scores * 0, score_thresh=0.1, nms_thresh=0.5, max_detections=5,
                      width=100, height=100)
    assert out["boxes"].shape == (0, 4) and out["labels"].dtype == torch.int64


def test_multiscale_sizes_are_stride_multiples_and_deterministic():
    model = YOLOv2(num_classes=2, image_size=128, multiscale=[96, 160], multiscale_every=2).train()
    sizes = []
    for step in range(20):
        model.steps.fill_(step)
        sizes.append(model.input_size())
    assert set(sizes) <= {96, 112, 128, 144, 160} and len(set(sizes)) > 1
    assert all(sizes[i] == sizes[i + 1] for i in range(0, 20, 2))  # constant within a period
    model.steps.fill_(7)
    assert model.input_size() == sizes[7]
    assert model.eval().input_size() == 128
    assert math.isclose(model.stride, 16)
