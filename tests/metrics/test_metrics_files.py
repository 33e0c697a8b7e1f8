"""evaluate.py on prediction files: numbers equal pycocotools' and the in-memory
evaluators', outputs are written, and bad inputs end in one clear line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from coco_synth import pycocotools_eval, random_detection_set, reference_inputs
from PIL import Image

from zoo.errors import UserError
from zoo.metrics.detection import DetectionEvaluator, write_coco_results
from zoo.metrics.files import evaluate_files
from zoo.metrics.segmentation import SegmentationEvaluator

COCO_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


def _dump(obj, path):
    for a in obj.get("annotations", []) if isinstance(obj, dict) else obj:
        seg = a.get("segmentation")
        if isinstance(seg, dict) and isinstance(seg["counts"], bytes):
            a["segmentation"] = {**seg, "counts": seg["counts"].decode()}
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("coco")
    preds, targets = random_detection_set(10, 60, 4)
    gt, res = reference_inputs(preds, targets, 4)
    return d, _dump(gt, d / "gt.json"), _dump(res, d / "res.json"), gt, res


def test_detection_files_equal_pycocotools(coco_files, capsys):
    d, gt_path, res_path, gt, res = coco_files
    out = d / "out"
    m = evaluate_files({"task": "detection", "gt": gt_path, "predictions": res_path,
                        "protocol": "coco,voc12", "output": str(out)})
    ref = pycocotools_eval(gt, res)
    np.testing.assert_allclose([m[k] for k in COCO_KEYS], ref.stats[:12], rtol=0, atol=1e-9)
    written = json.loads((out / "metrics.json").read_text())
    assert written["map"] == pytest.approx(m["map"]) and "voc12_map" in written
    assert "voc07_map" not in written
    assert (out / "pr_curves.png").stat().st_size > 0 and (out / "ap_per_class.png").exists()
    printed = capsys.readouterr().out
    assert "map_50" in printed and "voc12_ap" in printed


def test_detection_default_output_beside_predictions(tmp_path):
    preds, targets = random_detection_set(11, 5, 2)
    gt, res = reference_inputs(preds, targets, 2)
    m = evaluate_files({"task": "detection", "gt": _dump(gt, tmp_path / "g.json"),
                        "predictions": _dump(res, tmp_path / "r.json"), "protocol": "voc07"})
    assert (tmp_path / "metrics.json").exists() and "map" not in m and "voc07_map" in m


def test_keypoints_file_mode(tmp_path):
    sigmas = [0.04, 0.06, 0.08]
    preds, targets = random_detection_set(12, 25, 2, keypoints=3, mean_detections=6)
    gt, res = reference_inputs(preds, targets, 2, "keypoints")
    m = evaluate_files({"task": "detection", "gt": _dump(gt, tmp_path / "g.json"),
                        "predictions": _dump(res, tmp_path / "r.json"), "iou_type": "keypoints",
                        "sigmas": ",".join(map(str, sigmas))})
    ref = pycocotools_eval(gt, res, "keypoints", sigmas)
    assert m["map"] == pytest.approx(ref.stats[0], abs=1e-9)
    assert m["mar_large"] == pytest.approx(ref.stats[9], abs=1e-9)
    with pytest.raises(UserError, match="sigmas"):
        evaluate_files({"task": "detection", "gt": str(tmp_path / "g.json"),
                        "predictions": str(tmp_path / "r.json"), "iou_type": "keypoints"})


def test_segm_file_mode(tmp_path):
    preds, targets = random_detection_set(13, 8, 3, masks=True, size=48, mean_detections=5)
    gt, res = reference_inputs(preds, targets, 3, "segm", size=48)
    m = evaluate_files({"task": "detection", "gt": _dump(gt, tmp_path / "g.json"),
                        "predictions": _dump(res, tmp_path / "r.json"), "iou_type": "segm"})
    ref = pycocotools_eval(*reference_inputs(preds, targets, 3, "segm", size=48), "segm")
    np.testing.assert_allclose([m[k] for k in COCO_KEYS], ref.stats[:12], rtol=0, atol=1e-9)


def test_write_coco_results_maps_labels_to_original_ids(tmp_path):
    preds, targets = random_detection_set(14, 30, 4)
    ev = DetectionEvaluator(4, protocols=("coco",))
    ev.update(preds, (None, targets))
    want = ev.compute()
    cat_ids = [1, 7, 42, 90]  # a dataset with sparse category ids
    gt, _ = reference_inputs(preds, targets, 4)
    for a in gt["annotations"]:
        a["category_id"] = cat_ids[a["category_id"] - 1]
    gt["categories"] = [{"id": c, "name": str(k + 1)} for k, c in enumerate(cat_ids)]
    n = write_coco_results(tmp_path / "res.json", {int(t["image_id"]): p for p, t in zip(preds, targets)},
                           cat_ids)
    assert n == sum(len(p["labels"]) for p in preds)
    m = evaluate_files({"task": "detection", "gt": _dump(gt, tmp_path / "gt.json"),
                        "predictions": str(tmp_path / "res.json")})
    # the file rounds boxes to 1/1000 pixel and scores to 1e-5
    assert m["map"] == pytest.approx(want["map"], abs=2e-3)


def test_write_coco_results_with_masks(tmp_path):
    preds, targets = random_detection_set(15, 6, 3, masks=True, size=40, mean_detections=4)
    ev = DetectionEvaluator(3, iou_type="segm")
    ev.update(preds, (None, targets))
    want = ev.compute()
    gt, _ = reference_inputs(preds, targets, 3, "segm", size=40)
    write_coco_results(tmp_path / "res.json", {int(t["image_id"]): p for p, t in zip(preds, targets)})
    m = evaluate_files({"task": "detection", "gt": _dump(gt, tmp_path / "gt.json"),
                        "predictions": str(tmp_path / "res.json"), "iou_type": "segm"})
    # the file rounds boxes to 1/1000 pixel and scores to 1e-5; both sides size mask
    # detections by their box, so every number agrees
    for key in COCO_KEYS:
        assert m[key] == pytest.approx(want[key], abs=2e-3), key
    with pytest.raises(ValueError, match="paste masks"):
        ev.update([{**preds[0], "masks": preds[0]["masks"][:, :, :20]}], (None, targets[:1]))


def _write_pngs(folder, arrays, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        Image.fromarray(a.astype(np.uint8), mode=mode if mode != "L" else None).save(folder / f"{name}.png")


def test_segmentation_files_equal_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    gts = {f"img{i}": rng.integers(0, 3, (20, 30)) for i in range(4)}
    for g in gts.values():
        g[:4, :4] = 255
    prs = {k: np.where(rng.random(g.shape) < 0.8, g % 255, rng.integers(0, 3, g.shape)) for k, g in gts.items()}
    _write_pngs(tmp_path / "gt", gts)
    _write_pngs(tmp_path / "pred", prs)
    m = evaluate_files({"task": "segmentation", "gt": str(tmp_path / "gt"),
                        "predictions": str(tmp_path / "pred"), "num_classes": "4",
                        "class_names": "bg,a,b,never", "output": str(tmp_path / "o" / "m.json")})
    ev = SegmentationEvaluator(4, ["bg", "a", "b", "never"])
    for k in sorted(gts):
        ev.update(torch.from_numpy(prs[k])[None], (None, torch.from_numpy(gts[k])[None]))
    want = ev.compute()
    assert {k: m[k] for k in want} == want
    assert m["absent_classes"] == ["never"]
    written = json.loads((tmp_path / "o" / "m.json").read_text())
    assert written["per_class"]["never"]["iou"] is None
    assert (tmp_path / "o" / "iou_per_class.png").exists()


# -- bad inputs --------------------------------------------------------------------------------

def _one_line_error(options, match):
    with pytest.raises(UserError, match=match) as e:
        evaluate_files(options)
    assert "\n" not in str(e.value)


def test_detection_bad_files(coco_files, tmp_path):
    _, gt_path, res_path, _, res = coco_files
    base = {"task": "detection", "gt": gt_path, "predictions": res_path}
    _one_line_error({**base, "gt": str(tmp_path / "nope.json")}, "not found")
    (tmp_path / "bad.json").write_text("{not json")
    _one_line_error({**base, "predictions": str(tmp_path / "bad.json")}, "not valid json")
    _one_line_error({**base, "predictions": gt_path}, "ground-truth file")
    no_bbox = [{k: v for k, v in r.items() if k != "bbox"} for r in res[:3]]
    _one_line_error({**base, "predictions": _dump(no_bbox, tmp_path / "nb.json")}, "no 'bbox'")
    wrong_img = [dict(r, image_id=123456) for r in res[:3]]
    _one_line_error({**base, "predictions": _dump(wrong_img, tmp_path / "wi.json")}, "image id")
    wrong_cat = [dict(r, category_id=0) for r in res[:3]]
    _one_line_error({**base, "predictions": _dump(wrong_cat, tmp_path / "wc.json")}, "category id")
    _one_line_error({**base, "gt": _dump({"images": []}, tmp_path / "g.json")}, "COCO instances")
    _one_line_error({**base, "iou_type": "polygon"}, "iou_type")
    _one_line_error({**base, "protocol": "voc2012"}, "protocol")
    _one_line_error({**base, "iou_type": "segm", "protocol": "voc07"}, "boxes only")
    _one_line_error({**base, "num_classes": "3"}, "unknown option")
    _one_line_error({"task": "tracking"}, "unknown task")
    _one_line_error({"task": "detection", "gt": gt_path}, "predictions=PATH")


def test_segmentation_bad_files(tmp_path):
    g = np.zeros((4, 5))
    _write_pngs(tmp_path / "gt", {"a": g, "b": g})
    _write_pngs(tmp_path / "pred", {"a": g})
    base = {"task": "segmentation", "gt": str(tmp_path / "gt"), "predictions": str(tmp_path / "pred"),
            "num_classes": "2"}
    _one_line_error(base, "no prediction with the same name")
    _one_line_error({**base, "gt": str(tmp_path / "missing")}, "not found")
    _write_pngs(tmp_path / "pred", {"b": np.zeros((5, 5))})
    _one_line_error(base, "5x5")
    _write_pngs(tmp_path / "pred", {"b": g})
    _write_pngs(tmp_path / "gt", {"b": np.full((4, 5), 7)})
    _one_line_error(base, "mask value 7")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "gt" / "b.png")
    _one_line_error(base, "single-channel")
    _one_line_error({**base, "num_classes": "x"}, "integers")


def test_cli_exit_status_two_on_bad_file(tmp_path, capsys):
    cli = pytest.importorskip("zoo.cli")
    code = cli.evaluate_main(["task=detection", f"gt={tmp_path / 'missing.json'}",
                              f"predictions={tmp_path / 'r.json'}"])
    assert code == 2
    err = capsys.readouterr()
    assert "not found" in err.err + err.out


def _gt_and_results():
    gt = {"images": [{"id": 1, "height": 50, "width": 50}, {"id": 2, "height": 50, "width": 50}],
          "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
          "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                          {"image_id": 2, "category_id": 3, "bbox": [5, 5, 20, 10]},
                          {"image_id": 2, "category_id": 1, "bbox": [30, 30, 8, 8]}]}
    res = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
           {"image_id": 2, "category_id": 3, "bbox": [5, 5, 20, 11], "score": 0.8},
           {"image_id": 2, "category_id": 1, "bbox": [30, 30, 8, 8], "score": 0.7},
           {"image_id": 2, "category_id": 1, "bbox": [1, 1, 8, 8], "score": 0.1}]
    return gt, res


def _cli_one_line(tmp_path, capsys, gt, res, *extra):
    cli = pytest.importorskip("zoo.cli")
    g, r = tmp_path / "gt.json", tmp_path / "res.json"
    g.write_text(json.dumps(gt))  # json.dumps writes NaN as the token NaN, as many tools do
    r.write_text(json.dumps(res))
    code = cli.evaluate_main(["task=detection", f"gt={g}", f"predictions={r}", *extra])
    err = capsys.readouterr().err
    return code, err


def test_valid_small_files_score_through_the_cli(tmp_path, capsys):
    gt, res = _gt_and_results()
    code, err = _cli_one_line(tmp_path, capsys, gt, res, "protocol=all")
    assert code == 0 and err == ""
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["voc07_devkit_map"] > 0 and m["map"] > 0


@pytest.mark.parametrize("where,index,value,match", [
    ("res", 2, {"score": "0.7"}, r"result #2: field 'score' is '0.7', not a finite number"),
    ("res", 2, {"score": float("nan")}, r"result #2: field 'score' is nan, not a finite number"),
    ("res", 2, {"score": True}, r"result #2: field 'score' is True"),
    ("res", 1, {"bbox": ["5", 5, 20, 11]}, r"result #1: field 'bbox' has x = '5', not a finite number"),
    ("res", 1, {"bbox": [5, 5, float("nan"), 11]}, r"result #1: field 'bbox' has w = nan"),
    ("res", 1, {"bbox": [5, 5, float("inf"), 11]}, r"result #1: field 'bbox' has w = inf"),
    ("res", 1, {"bbox": [5, 5, 20]}, r"result #1: field 'bbox' is \[5, 5, 20\], not a list"),
    ("res", 1, {"bbox": "5 5 20 11"}, r"result #1: field 'bbox' is '5 5 20 11', not a list"),
    ("res", 1, {"bbox": [5, 5, -20, 11]}, r"result #1: field 'bbox' has a negative width"),
    ("res", 1, {"image_id": "2"}, r"result #1: field 'image_id' is '2', an image id not in the ground"),
    ("res", 1, {"image_id": None}, r"result #1: field 'image_id' is None"),
    ("gt", 1, {"bbox": [5, 5, 20, -10]}, r"annotation #1: field 'bbox' has a negative height"),
    ("gt", 1, {"bbox": [5, "5", 20, 10]}, r"annotation #1: field 'bbox' has y = '5'"),
    ("gt", 1, {"bbox": [5, 5, float("nan"), 10]}, r"annotation #1: field 'bbox' has w = nan"),
    ("gt", 1, {"area": float("nan")}, r"annotation #1: field 'area' is nan"),
    ("gt", 1, {"area": -4}, r"annotation #1: field 'area' is -4, not a finite number >= 0"),
    ("gt", 1, {"iscrowd": 2}, r"annotation #1: field 'iscrowd' is 2, not 0 or 1"),
    ("gt", 1, {"image_id": 7}, r"annotation #1 refers to image id 7"),
    ("gt", 1, {"bbox": None, "drop": "bbox"}, r"annotation #1 has no 'bbox' field"),
    ("gt", 1, {"category_id": None, "drop": "category_id"}, r"annotation #1 has no 'category_id' field"),
])
def test_bad_entries_end_in_one_line_naming_index_and_field(tmp_path, capsys, where, index, value, match):
    gt, res = _gt_and_results()
    rows = res if where == "res" else gt["annotations"]
    value = dict(value)
    drop = value.pop("drop", None)
    rows[index].update(value)
    if drop:
        del rows[index][drop]
    rows[-1].update({k: v for k, v in value.items()})  # a later bad entry: the first one is named
    code, err = _cli_one_line(tmp_path, capsys, gt, res)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert re.search(match, err), err
    assert "Traceback" not in err


def test_bad_gt_image_entry_and_keypoints(tmp_path, capsys):
    gt, res = _gt_and_results()
    gt["images"][1] = {"height": 50}
    code, err = _cli_one_line(tmp_path, capsys, gt, res)
    assert code == 2 and "image #1 has no 'id' field" in err and err.count("\n") == 1
    gt, res = _gt_and_results()
    for a in gt["annotations"]:
        a["keypoints"] = [1, 2, 2] * 17
    for r in res:
        r["keypoints"] = [1, 2, 2] * 17
    res[3]["keypoints"] = [1, 2, "x"] + [1, 2, 2] * 16
    code, err = _cli_one_line(tmp_path, capsys, gt, res, "iou_type=keypoints")
    assert code == 2 and "result #3: field 'keypoints' has value #2 = 'x'" in err, err
