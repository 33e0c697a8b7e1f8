"""COCO and VOC detection AP: hand-computed cases, differential tests against pycocotools
and an independent VOC devkit port, batch- and process-count independence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from coco_synth import pycocotools_eval, random_detection_set, reference_inputs

from zoo.errors import DataError
from zoo.metrics.detection import DetectionEvaluator, coco_evaluate, voc_ap, voc_evaluate

COCO_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
KPT_KEYS = ["map", "map_50", "map_75", "map_medium", "map_large",
            "mar", "mar_50", "mar_75", "mar_medium", "mar_large"]


def _pred(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def _target(boxes, labels, **extra):
    t = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
         "labels": torch.tensor(labels, dtype=torch.int64)}
    t.update({k: torch.tensor(v) for k, v in extra.items()})
    return t


def _evaluate(preds, targets, num_classes=1, **kw):
    ev = DetectionEvaluator(num_classes, **kw)
    ev.update(preds, (None, targets))
    return ev.compute()


# -- hand-computed -----------------------------------------------------------------------------

def test_perfect_detection_scores_one():
    box = [[10, 10, 60, 60]]  # 50 x 50: medium
    m = _evaluate([_pred(box, [0.9], [1])], [_target(box, [1])])
    for k in ("map", "map_50", "map_75", "map_medium", "mar_1", "mar_10", "mar_100", "mar_medium",
              "voc07_map", "voc12_map"):
        assert m[k] == pytest.approx(1.0, abs=1e-12), k
    assert m["map_small"] == -1 and m["map_large"] == -1  # no ground truth there: undefined
    assert m["per_class"]["1"]["ap"] == pytest.approx(1.0)


def test_two_of_three_found_gives_67_of_101():
    gts = [[0, 0, 40, 40], [50, 50, 90, 90], [100, 0, 140, 40]]
    m = _evaluate([_pred(gts[:2], [0.9, 0.8], [1, 1])], [_target(gts, [1, 1, 1])])
    # recall reaches 2/3 at precision 1: the 101 recall levels 0, .01, ..., .66 score 1.
    assert m["map"] == pytest.approx(67 / 101, abs=1e-12)
    assert m["map_50"] == pytest.approx(67 / 101, abs=1e-12)
    assert m["mar_100"] == pytest.approx(2 / 3, abs=1e-12)
    assert m["voc12_map"] == pytest.approx(2 / 3, abs=1e-12)
    assert m["voc07_map"] == pytest.approx(7 / 11, abs=1e-12)  # levels 0..0.6


def test_crowd_region_absorbs_duplicates():
    gts = [[0, 0, 50, 50], [100, 100, 200, 200]]
    dets = [[0, 0, 50, 50], [110, 110, 130, 130], [150, 150, 190, 190], [120, 160, 140, 180]]
    scores = [0.5, 0.9, 0.8, 0.7]  # the duplicates inside the crowd outrank the true hit
    crowd = _evaluate([_pred(dets, scores, [1] * 4)], [_target(gts, [1, 1], iscrowd=[0, 1])])
    plain = _evaluate([_pred(dets, scores, [1] * 4)], [_target(gts, [1, 1], iscrowd=[0, 0])])
    assert crowd["map"] == pytest.approx(1.0, abs=1e-12)
    assert plain["map"] < 0.6
    # VOC ignores crowds like difficult objects, but the devkit matches by ordinary IoU,
    # so small boxes inside a big crowd region stay false positives there.
    assert crowd["voc12_map"] == pytest.approx(0.25, abs=1e-12)


@pytest.mark.parametrize("side,in_small,in_medium,in_large", [
    (32.0, True, True, False),   # area 32² is in both small [0, 32²] and medium [32², 96²]
    (96.0, False, True, True),   # likewise 96² in medium and large
    (31.5, True, False, False),
    (96.5, False, False, True),
])
def test_area_range_boundaries(side, in_small, in_medium, in_large):
    box = [[5, 5, 5 + side, 5 + side]]
    m = _evaluate([_pred(box, [0.9], [1])], [_target(box, [1])], protocols=("coco",))
    for key, inside in (("map_small", in_small), ("map_medium", in_medium), ("map_large", in_large)):
        assert m[key] == (1.0 if inside else -1.0), key


def test_gt_area_field_decides_the_range_not_the_box():
    box = [[0, 0, 100, 100]]  # box area 10^4 (large), annotated area 500 (small)
    m = _evaluate([_pred(box, [0.9], [1])], [_target(box, [1], area=[500.0])], protocols=("coco",))
    assert m["map_small"] == 1.0 and m["map_large"] == -1.0


def test_hundred_detection_cut():
    gt = [[0, 0, 20, 20]]
    far = [[200 + i, 200, 210 + i, 210] for i in range(100)]  # 100 misses, scored higher
    dets = far + gt
    scores = [0.99] * 100 + [0.5]
    m = _evaluate([_pred(dets, scores, [1] * 101)], [_target(gt, [1])])
    assert m["map"] == 0.0 and m["mar_100"] == 0.0  # the hit is the 101st detection
    # VOC has no cap: the hit comes last, precision 1/101 at recall 1.
    assert m["voc12_map"] == pytest.approx(1 / 101, abs=1e-12)
    assert m["voc07_map"] == pytest.approx(1 / 101, abs=1e-12)
    fewer = _evaluate([_pred(far[:99] + gt, [0.99] * 99 + [0.5], [1] * 100)], [_target(gt, [1])])
    # the hit is the 100th: precision 1/100 at every recall level
    assert fewer["map"] == pytest.approx(0.01, abs=1e-12) and fewer["mar_100"] == 1.0


def test_voc_ap_on_a_hand_built_curve():
    rec = np.array([0.2, 0.4, 0.4, 0.6])
    prec = np.array([1.0, 1.0, 2 / 3, 0.5])
    # all-point: 0.2*1 + 0.2*1 + 0.2*0.5 (+ 0.4*0 beyond the last recall)
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.5, abs=1e-15)
    # 11-point: levels 0..0.4 -> 1 (5 levels), 0.5 and 0.6 -> 0.5, 0.7..1 -> 0
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx(6 / 11, abs=1e-15)
    # a recall of exactly 3/10 reaches the 0.3 level (np.arange(0, 1.1, 0.1) would miss it)
    assert voc_ap(np.array([3 / 10]), np.array([1.0]), use_07_metric=True) == pytest.approx(4 / 11)


def test_voc_difficult_duplicates_and_taken_best_match():
    gts = [[0, 0, 10, 10], [20, 0, 30, 10], [0, 0, 9, 10]]
    difficult = [False, True, False]
    dets = [[0, 0, 10, 10],   # best on gt0 -> TP
            [20, 0, 30, 10],  # on the difficult gt1 -> ignored
            [0, 0, 10, 10],   # best IoU is gt0 again (taken) -> FP, although gt2 is free
            [0, 0, 9, 10]]    # best on gt2 -> TP
    res = voc_evaluate(np.zeros(4, int), np.array(dets, float), np.array([0.9, 0.8, 0.7, 0.6]),
                       np.ones(4, int), np.zeros(3, int), np.array(gts, float), np.ones(3, int),
                       np.array(difficult), labels=[1])[1]
    assert res.num_gt == 2
    np.testing.assert_allclose(res.recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(res.precision, [1.0, 0.5, 2 / 3])


def test_labels_outside_range():
    box = [[0, 0, 10, 10]]
    with pytest.raises(DataError, match="outside 1..2"):
        _evaluate([_pred(box, [0.9], [1])], [_target(box, [3])], num_classes=2)
    # a predicted background label (0) is dropped, as pycocotools drops unknown categories
    m = _evaluate([_pred(box * 2, [0.9, 0.95], [1, 0])], [_target(box, [1])], num_classes=2)
    assert m["map"] == pytest.approx(1.0)


def test_no_detections_at_all():
    m = _evaluate([_pred([], [], [])], [_target([[0, 0, 10, 10]], [1])])
    assert m["map"] == 0.0 and m["voc12_map"] == 0.0


# -- differential: pycocotools ----------------------------------------------------------------

def _per_class_reference(ev_ref, num_classes):
    p = ev_ref.eval["precision"]  # (T, R, K, A, M)
    out = {}
    for k in range(num_classes):
        x = p[:, :, k, 0, -1]
        out[k + 1] = float(np.mean(x[x > -1])) if (x > -1).any() else None
    return out


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_bbox_equals_pycocotools(backend):
    K = 6
    preds, targets = random_detection_set(0, 250, K)
    ev = DetectionEvaluator(K, backend=backend, protocols=("coco",))
    for i in range(0, len(preds), 16):
        ev.update(preds[i:i + 16], (None, targets[i:i + 16]))
    m = ev.compute()
    ref = pycocotools_eval(*reference_inputs(preds, targets, K))
    np.testing.assert_allclose([m[k] for k in COCO_KEYS], ref.stats[:12], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ev.last_coco.precision, ref.eval["precision"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ev.last_coco.recall, ref.eval["recall"], rtol=0, atol=1e-9)
    for c, ap in _per_class_reference(ref, K).items():
        ours = m["per_class"][str(c)]["ap"]
        assert (ours is None) == (ap is None) and (ap is None or abs(ours - ap) < 1e-9)
    assert m["per_class"][str(K)]["ap"] is None          # never in the ground truth
    assert m["per_class"][str(K - 1)]["ap"] == 0.0       # never predicted
    assert sum(len(p["labels"]) > 100 for p in preds) > 0  # the cut is exercised
    assert sum(int(t["iscrowd"].sum()) for t in targets) > 0


def test_segm_equals_pycocotools():
    K = 4
    preds, targets = random_detection_set(1, 30, K, masks=True, size=64, mean_detections=8)
    m = _evaluate(preds, targets, K, iou_type="segm")
    ref = pycocotools_eval(*reference_inputs(preds, targets, K, "segm", size=64), "segm")
    np.testing.assert_allclose([m[k] for k in COCO_KEYS], ref.stats[:12], rtol=0, atol=1e-9)
    assert 0.05 < m["map"] < 0.95
    assert "voc07_map" not in m  # VOC scores boxes only


def test_keypoints_equal_pycocotools():
    K, P = 3, 5
    sigmas = [0.03, 0.05, 0.07, 0.09, 0.11]
    preds, targets = random_detection_set(2, 60, K, keypoints=P, mean_detections=10)
    m = _evaluate(preds, targets, K, iou_type="keypoints", keypoint_sigmas=sigmas)
    ref = pycocotools_eval(*reference_inputs(preds, targets, K, "keypoints"), "keypoints", sigmas)
    np.testing.assert_allclose([m[k] for k in KPT_KEYS], ref.stats[:10], rtol=0, atol=1e-9)
    assert 0.05 < m["map"] < 0.95
    with pytest.raises(ValueError, match="keypoint_sigmas"):
        _evaluate(preds, targets, K, iou_type="keypoints")  # 5 points: COCO's 17 sigmas do not fit


def test_empty_and_zero_id_inputs_to_coco_evaluate():
    gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                           "area": 100, "iscrowd": 0}]}
    ev = coco_evaluate(gt, [], "bbox")
    assert ev.summary()["map"] == 0.0


# -- differential: VOC devkit ------------------------------------------------------------------

# MATLAB's 0:0.1:1 as the doubles MATLAB builds (first half k*0.1, second half 1-(10-k)*0.1),
# written out rather than computed so that the reference does not share the code's formula.
MATLAB_LEVELS = [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def _voc_devkit_port(preds, targets, num_classes, use_07, devkit=False):
    """The devkit's voc_eval loop, one detection at a time: continuous-coordinate IoU > 0.5,
    or with ``devkit`` VOCevaldet.m's own rules (+1 pixel, overlap only when the +1 widths
    are positive, IoU >= 0.5, MATLAB's recall levels)."""
    one = 1.0 if devkit else 0.0
    aps = {}
    for c in range(1, num_classes + 1):
        recs = {}
        for i, t in enumerate(targets):
            sel = (t["labels"] == c).numpy()
            ign = t["difficult"].numpy()[sel] | (t["iscrowd"].numpy()[sel] != 0)
            recs[i] = {"bb": t["boxes"].double().numpy()[sel], "ign": ign, "det": [False] * int(sel.sum())}
        npos = sum(int((~r["ign"]).sum()) for r in recs.values())
        dets = [(i, float(s), b) for i, p in enumerate(preds)
                for b, s, lab in zip(p["boxes"].double().numpy(), p["scores"].double().numpy(),
                                     p["labels"].numpy()) if lab == c]
        order = sorted(range(len(dets)), key=lambda k: -dets[k][1])  # stable
        tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
        for d, k in enumerate(order):
            i, _, bb = dets[k]
            r = recs[i]
            ovmax, jmax = -np.inf, -1
            for j, g in enumerate(r["bb"]):
                iw = min(bb[2], g[2]) - max(bb[0], g[0]) + one
                ih = min(bb[3], g[3]) - max(bb[1], g[1]) + one
                if devkit and not (iw > 0 and ih > 0):
                    continue
                iw, ih = max(iw, 0.0), max(ih, 0.0)
                inter = iw * ih
                uni = ((bb[2] - bb[0] + one) * (bb[3] - bb[1] + one)
                       + (g[2] - g[0] + one) * (g[3] - g[1] + one) - inter)
                ov = inter / uni
                if ov > ovmax:
                    ovmax, jmax = ov, j
            if (ovmax >= 0.5) if devkit else (ovmax > 0.5):
                if not r["ign"][jmax]:
                    if not r["det"][jmax]:
                        tp[d], r["det"][jmax] = 1, True
                    else:
                        fp[d] = 1
            else:
                fp[d] = 1
        if npos == 0:
            aps[c] = None
            continue
        tpc, fpc = np.cumsum(tp), np.cumsum(fp)
        rec = tpc / npos
        prec = tpc / np.maximum(tpc + fpc, np.finfo(np.float64).eps)
        if use_07:
            levels = MATLAB_LEVELS if devkit else [t / 10 for t in range(11)]
            ap = sum(max([p for p, r in zip(prec, rec) if r >= t], default=0.0) for t in levels) / 11
        else:
            mrec = [0.0, *rec, 1.0]
            mpre = [0.0, *prec, 0.0]
            for i in range(len(mpre) - 2, -1, -1):
                mpre[i] = max(mpre[i], mpre[i + 1])
            ap = sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1)
                     if mrec[i + 1] != mrec[i])
        aps[c] = ap
    return aps


def test_voc_equals_devkit_port():
    K = 4
    preds, targets = random_detection_set(3, 80, K, difficult_p=0.15, mean_detections=12)
    m = _evaluate(preds, targets, K, protocols=("voc07", "voc12"))
    for proto, use_07 in (("voc07", True), ("voc12", False)):
        ref = _voc_devkit_port(preds, targets, K, use_07)
        for c, ap in ref.items():
            ours = m["per_class"][str(c)][f"{proto}_ap"]
            assert (ours is None) == (ap is None)
            if ap is not None:
                assert ours == pytest.approx(ap, abs=1e-12), (proto, c)
        defined = [a for a in ref.values() if a is not None]
        assert m[f"{proto}_map"] == pytest.approx(np.mean(defined), abs=1e-12)
    assert "map" not in m


def _integer_boxes(preds, targets):
    """The same set on whole-pixel corners: IoU of exactly 0.5 and the +1 widths both matter."""
    for d in [*preds, *targets]:
        d["boxes"] = d["boxes"].round()
        d["boxes"][:, 2:] = torch.maximum(d["boxes"][:, 2:], d["boxes"][:, :2])
    return preds, targets


def test_voc07_devkit_equals_the_devkit_rules():
    K = 4
    preds, targets = _integer_boxes(*random_detection_set(5, 80, K, difficult_p=0.15, mean_detections=12,
                                                          size=48))
    m = _evaluate(preds, targets, K, protocols="voc07,voc07_devkit")
    ref = _voc_devkit_port(preds, targets, K, True, devkit=True)
    cont = _voc_devkit_port(preds, targets, K, True)
    for c, ap in ref.items():
        ours = m["per_class"][str(c)]["voc07_devkit_ap"]
        assert (ours is None) == (ap is None)
        if ap is not None:
            assert ours == pytest.approx(ap, abs=1e-12), c
            assert m["per_class"][str(c)]["voc07_ap"] == pytest.approx(cont[c], abs=1e-12), c
    defined = [a for a in ref.values() if a is not None]
    assert m["voc07_devkit_map"] == pytest.approx(np.mean(defined), abs=1e-12)
    assert abs(m["voc07_devkit_map"] - m["voc07_map"]) > 1e-3  # the conventions do differ here


def test_voc07_devkit_hand_computed():
    # Inclusive pixel corners: gt 0..9 is 10x10 = 100 pixels, the detection 0..9 x 0..4 is 50.
    # Devkit: 50 / (100 + 50 - 50) = 0.5 >= 0.5, a hit; continuous: 36 / 81 < 0.5, a miss.
    m = _evaluate([_pred([[0, 0, 9, 4]], [0.9], [1])], [_target([[0, 0, 9, 9]], [1])],
                  protocols=("voc07", "voc07_devkit"))
    assert m["voc07_devkit_map"] == pytest.approx(1.0, abs=1e-15) and m["voc07_map"] == 0.0
    # Continuous IoU exactly 0.5: not above 0.5, so voc07 misses it; the devkit reads
    # 66 / 121 (11x11 and 11x6 pixels).
    m = _evaluate([_pred([[0, 0, 10, 5]], [0.9], [1])], [_target([[0, 0, 10, 10]], [1])],
                  protocols=("voc07", "voc07_devkit"))
    assert m["voc07_devkit_map"] == pytest.approx(1.0, abs=1e-15) and m["voc07_map"] == 0.0
    # Boxes that share one pixel column overlap under +1 (iw = 1), but far below 0.5.
    m = _evaluate([_pred([[9, 0, 18, 9]], [0.9], [1])], [_target([[0, 0, 9, 9]], [1])],
                  protocols="voc07_devkit")
    assert m["voc07_devkit_map"] == 0.0


@pytest.mark.parametrize("found,continuous,devkit", [
    (3, 4 / 11, 3 / 11),   # recall exactly 0.3 misses MATLAB's level 3*0.1 = 0.30000000000000004
    (6, 7 / 11, 7 / 11),   # 1 - 4*0.1 is exactly 0.6
    (7, 8 / 11, 8 / 11),   # 1 - 3*0.1 is exactly 0.7
])
def test_voc07_devkit_recall_levels(found, continuous, devkit):
    gts = [[20 * i, 0, 20 * i + 10, 10] for i in range(10)]
    preds = [_pred(gts[:found], [0.9] * found, [1] * found)]
    m = _evaluate(preds, [_target(gts, [1] * 10)], protocols=("voc07", "voc07_devkit"))
    assert m["voc07_map"] == pytest.approx(continuous, abs=1e-15)
    assert m["voc07_devkit_map"] == pytest.approx(devkit, abs=1e-15)


def test_voc07_devkit_difficult_objects():
    gts = [[0, 0, 9, 9], [20, 0, 29, 9], [40, 0, 49, 9]]
    dets = [[20, 0, 29, 9], [0, 0, 9, 9], [0, 0, 9, 9], [60, 0, 69, 9]]
    # det0 on the difficult gt1: neither TP nor FP; det1 TP; det2 a duplicate: FP; det3 FP.
    m = _evaluate([_pred(dets, [0.9, 0.8, 0.7, 0.6], [1] * 4)],
                  [_target(gts, [1] * 3, difficult=[False, True, False])], protocols="voc07_devkit")
    # 2 objects count; recall 0.5 at precision 1: levels 0..0.5 -> 6/11.
    assert m["per_class"]["1"]["num_gt"] == 2
    assert m["voc07_devkit_map"] == pytest.approx(6 / 11, abs=1e-15)


def test_protocol_names():
    from zoo.errors import UserError
    from zoo.metrics.detection import DEVKIT07_RECALL_LEVELS, PROTOCOLS, parse_protocols

    assert list(DEVKIT07_RECALL_LEVELS) == MATLAB_LEVELS
    assert parse_protocols(None) == ("coco",)
    assert parse_protocols("all") == PROTOCOLS and "voc07_devkit" in PROTOCOLS
    assert parse_protocols("voc07_devkit, coco,coco") == ("voc07_devkit", "coco")
    with pytest.raises(UserError, match="valid protocols: .*voc07_devkit"):
        parse_protocols("voc07,devkit")
    with pytest.raises(UserError):
        DetectionEvaluator(2, protocols=["coco", "voc2012"])
    assert DetectionEvaluator(2).protocols == ("coco", "voc07", "voc12")  # the default is unchanged


# -- batch and process independence ------------------------------------------------------------

def _shards(preds, targets, sizes):
    out, pos = [], 0
    for s in sizes:
        out.append((preds[pos:pos + s], targets[pos:pos + s]))
        pos += s
    return out


@pytest.mark.parametrize("with_ids", [True, False])
def test_batch_and_process_count_independence(with_ids):
    K = 4
    preds, targets = random_detection_set(4, 40, K, difficult_p=0.1)
    if not with_ids:
        for t in targets:
            del t["image_id"]
    one = _evaluate(preds, targets, K)
    for batch in (1, 3, 40):
        ev = DetectionEvaluator(K)
        for i in range(0, 40, batch):
            ev.update(preds[i:i + batch], (None, targets[i:i + batch]))
        assert ev.compute() == one
    # three "ranks" with contiguous shards, combined the way Evaluator.gather does
    states = []
    for p, t in _shards(preds, targets, [13, 14, 13]):
        ev = DetectionEvaluator(K)
        for i in range(0, len(p), 5):
            ev.update(p[i:i + 5], (None, t[i:i + 5]))
        states.append(ev.state())
    merged = DetectionEvaluator(K)
    merged.merge(states)
    assert merged.compute() == one


def test_sampler_padding_duplicates_are_dropped():
    K = 3
    preds, targets = random_detection_set(5, 11, K)
    one = _evaluate(preds, targets, K)
    # a padding sampler repeats the first samples to even out the ranks
    states = []
    for p, t in _shards(preds + preds[:1], targets + targets[:1], [6, 6]):
        ev = DetectionEvaluator(K)
        ev.update(p, (None, t))
        states.append(ev.state())
    merged = DetectionEvaluator(K)
    merged.merge(states)
    out = merged.compute()
    assert out == one and out["num_images"] == 11


def test_device_tensors_are_copied_once_per_batch():
    preds, targets = random_detection_set(6, 4, 3)
    ev = DetectionEvaluator(3)
    ev.update(preds, (None, targets))
    rec = ev.records[0]
    assert isinstance(rec["boxes"], np.ndarray) and rec["boxes"].dtype == np.float32
    assert all(not isinstance(v, torch.Tensor) for r in ev.records for v in r.values())
    assert math.isfinite(ev.compute()["map"])
