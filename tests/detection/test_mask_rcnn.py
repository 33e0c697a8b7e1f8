"""Instance segmentation: masks stay on their objects through the detection transforms,
COCO polygons and RLEs decode to the right pixels, mask AP equals pycocotools' on the
same inputs, Mask R-CNN predicts in the detection form plus masks, and the train ->
evaluate -> results file -> file scoring -> predict path gives the same numbers."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import overfit
from zoo.data.detection import CocoData, VocData, build_detection_transforms
from zoo.data.shapes import ShapesData
from zoo.errors import DataError
from zoo.tasks import get_task

MASK_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]


# -- transforms ------------------------------------------------------------------------------------
def _painted_scene(h: int = 48, w: int = 64):
    """An image whose objects are painted in one unique colour each, their masks and tight boxes."""
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    masks = torch.zeros(3, h, w, dtype=torch.uint8)
    masks[0, 5:20, 4:30] = 1                       # a rectangle
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    masks[1] = ((yy - 30) ** 2 + (xx - 45) ** 2 <= 81).to(torch.uint8)  # a disc
    masks[2, 36:46, 2:12] = 1
    masks[2, 40:42, 2:12] = 0                      # two bars, one object
    colours = torch.tensor([[250, 10, 10], [10, 250, 10], [10, 10, 250]], dtype=torch.uint8)
    for m, c in zip(masks, colours):
        image[:, m.bool()] = c[:, None]
    boxes = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor([1, 2, 3]),
              "iscrowd": torch.zeros(3, dtype=torch.int64), "area": masks.sum((1, 2)).float(),
              "masks": masks}
    return image, target, colours


def _tight(mask: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize("ops", [{"hflip": 1.0}, {"vflip": 1.0, "hflip": 0.0},
                                 {"rot90": 1.0, "hflip": 0.0}, {"hflip": 1.0, "vflip": 1.0, "rot90": 1.0}])
def test_masks_follow_flips_and_quarter_turns(ops):
    image, target, colours = _painted_scene()
    tf = build_detection_transforms(True, **ops)
    out_image, out = tf(image, target)
    assert out["masks"].shape == (3, *out_image.shape[-2:]) and out["masks"].dtype == torch.uint8
    assert not torch.equal(out["masks"], target["masks"]) or out_image.shape != image.shape
    for m, c, box in zip(out["masks"], colours, out["boxes"]):
        on = m.bool()
        # every mask pixel still lies on its object's colour, and the box is its tight box
        assert (out_image[:, on] == c[:, None]).all()
        assert box.tolist() == _tight(m)
    torch.testing.assert_close(out["masks"].sum((1, 2)), target["masks"].sum((1, 2)))


def test_masks_follow_scale_jitter():
    torch.manual_seed(0)
    image, target, colours = _painted_scene()
    tf = build_detection_transforms(True, hflip=0.0, size=96, scale_range=(1.4, 1.6))
    out_image, out = tf(image, target)
    assert max(out_image.shape[-2:]) > 64 and out["masks"].shape[-2:] == out_image.shape[-2:]
    assert set(out["masks"].unique().tolist()) <= {0, 1}  # nearest neighbour, not blended
    for m, c, box in zip(out["masks"], colours, out["boxes"]):
        # the object's colour in the bilinearly resized image against the nearest-neighbour
        # mask: they differ only on the blended one-pixel rim
        region = (out_image.int() - c[:, None, None].int()).abs().max(0).values < 60
        on = m.bool()
        assert (region & on).sum() / (region | on).sum() > 0.8
        np.testing.assert_allclose(box.tolist(), _tight(m), atol=1.5)


def test_shapes_targets_carry_masks_only_when_asked():
    plain = ShapesData(num_val=4).dataset("val")[1][1]
    masked = ShapesData(num_val=4, with_masks=True).dataset("val")[1][1]
    assert "masks" not in plain
    assert masked["masks"].shape == (len(masked["labels"]), 128, 128) and masked["masks"].dtype == torch.uint8


# -- COCO masks ------------------------------------------------------------------------------------
def _coco_with_masks(root: Path, drop_segmentation: bool = False) -> dict[str, np.ndarray]:
    """One 40x30 image with a polygon object, a compressed-RLE object, a degenerate box
    (dropped by the reader) and an uncompressed-RLE crowd region; returns the masks."""
    from pycocotools import mask as mask_utils

    h, w = 30, 40
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "val2017" / "a.png")
    blob = np.zeros((h, w), np.uint8)
    blob[10:25, 20:27] = 1
    blob[12:14, 27:35] = 1                    # an L shape
    rle = mask_utils.encode(np.asfortranarray(blob))
    crowd = np.zeros((h, w), np.uint8)
    crowd[0:6, 0:40] = 1
    # uncompressed RLE: column-major run lengths, the first one of zeros (0 when it starts on)
    counts, current, run = [], 0, 0
    for v in crowd.flatten(order="F").tolist():
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    poly = [2.0, 3.0, 12.0, 3.0, 12.0, 18.0, 2.0, 18.0]  # a rectangle, corner order
    anns = [
        {"id": 1, "image_id": 5, "category_id": 8, "bbox": [2, 3, 10, 15], "area": 150, "iscrowd": 0,
         "segmentation": [poly]},
        {"id": 2, "image_id": 5, "category_id": 8, "bbox": [30, 5, 0, 4], "area": 0, "iscrowd": 0,
         "segmentation": [[30, 5, 30, 9, 30, 7]]},   # no width: dropped with its mask
        {"id": 3, "image_id": 5, "category_id": 9, "bbox": [20, 10, 15, 15], "area": int(blob.sum()),
         "iscrowd": 0, "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")}},
        {"id": 4, "image_id": 5, "category_id": 9, "bbox": [0, 0, 40, 6], "area": 240, "iscrowd": 1,
         "segmentation": {"size": [h, w], "counts": counts}},
    ]
    if drop_segmentation:
        del anns[2]["segmentation"]
    gt = {"images": [{"id": 5, "file_name": "a.png", "width": w, "height": h}], "annotations": anns,
          "categories": [{"id": 8, "name": "ant"}, {"id": 9, "name": "bee"}]}
    for split in ("train2017", "val2017"):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(gt))
    (root / "train2017").symlink_to(root / "val2017")
    poly_ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], h, w)))
    return {"polygon": poly_ref, "rle": blob, "crowd": crowd}


def test_coco_polygon_and_rle_masks_are_read(tmp_path):
    want = _coco_with_masks(tmp_path)
    with pytest.warns(UserWarning, match="dropped 1"):
        data = CocoData(root=str(tmp_path), with_masks=True, image_size=64)
    _, t = data.dataset("val")[0]
    assert t["labels"].tolist() == [1, 2, 2] and t["iscrowd"].tolist() == [0, 0, 1]
    assert t["masks"].shape == (3, 30, 40) and t["masks"].dtype == torch.uint8
    np.testing.assert_array_equal(t["masks"][1].numpy(), want["rle"])      # compressed RLE, exact
    np.testing.assert_array_equal(t["masks"][2].numpy(), want["crowd"])    # uncompressed RLE, exact
    np.testing.assert_array_equal(t["masks"][0].numpy(), want["polygon"])  # pycocotools' raster
    rect = np.zeros((30, 40), np.uint8)
    rect[3:18, 2:12] = 1
    inter, union = (t["masks"][0].numpy() & rect).sum(), (t["masks"][0].numpy() | rect).sum()
    assert inter / union > 0.85  # and that raster is the rectangle the polygon outlines
    with pytest.warns(UserWarning, match="dropped 1"):
        plain = CocoData(root=str(tmp_path), image_size=64)
    assert "masks" not in plain.dataset("val")[0][1]


def test_masks_asked_of_files_without_them_are_data_errors(tmp_path):
    _coco_with_masks(tmp_path / "coco", drop_segmentation=True)
    with pytest.raises(DataError, match="annotation 3 has no 'segmentation'"):
        CocoData(root=str(tmp_path / "coco"), with_masks=True)
    with pytest.raises(DataError, match="boxes only"):
        VocData(root=str(tmp_path / "voc"), with_masks=True)


def test_mask_rcnn_predicts_detections_with_masks():
    from zoo.models.segmentation.mask_rcnn import MaskRCNN

    torch.manual_seed(0)
    data = ShapesData(num_train=4, num_val=2, image_size=64, with_masks=True)
    batch = data.collate_fn([data.dataset("train")[i] for i in range(2)])
    model = MaskRCNN(num_classes=5, image_size=64, score_thresh=0.0)
    losses = model.training_step(batch)
    assert set(losses) == {"loss_rpn_obj", "loss_rpn_box", "loss_cls", "loss_box", "loss_mask"}
    sum(losses.values()).backward()
    assert model.net.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0
    model.eval()
    images = [torch.rand(3, 64, 64), torch.rand(3, 40, 72)]  # the second at its own size
    preds = model.predict((images, [{}, {}]))
    for im, p in zip(images, preds):
        assert p["masks"].shape == (len(p["boxes"]), *im.shape[-2:]) and p["masks"].dtype == torch.uint8
    task = get_task("detection")
    task.check_output(preds, (images, [{}, {}]))
    bad = [{**preds[0], "masks": preds[0]["masks"][:, :10]}, preds[1]]
    with pytest.raises(Exception, match="masks must be"):
        task.check_output(bad, (images, [{}, {}]))
    model.train()
    without = (batch.images, [{k: v for k, v in t.items() if k != "masks"} for t in batch.targets])
    with pytest.raises(DataError, match="with_masks=true"):
        model.training_step(without)


# -- mask AP ---------------------------------------------------------------------------------------
def _noisy_predictions(targets, seed: int):
    """Detections near the true objects (shifted masks, jittered boxes, some wrong labels)
    plus false positives, with tied and untied scores."""
    rng = np.random.default_rng(seed)
    preds = []
    for t in targets:
        h, w = t["masks"].shape[-2:]
        masks, boxes, labels = [], [], []
        for m, b, c in zip(t["masks"], t["boxes"], t["labels"]):
            if rng.random() < 0.15:
                continue  # missed
            dy, dx = rng.integers(-3, 4, 2)
            masks.append(torch.roll(m, (int(dy), int(dx)), (0, 1)))
            boxes.append(b + torch.tensor(rng.normal(0, 2, 4), dtype=torch.float32))
            labels.append(int(c) if rng.random() < 0.85 else int(rng.integers(1, 6)))
        for _ in range(int(rng.integers(0, 3))):  # false positives
            x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
            m = torch.zeros(h, w, dtype=torch.uint8)
            m[y0:y0 + 15, x0:x0 + 18] = 1
            masks.append(m)
            boxes.append(torch.tensor([x0, y0, x0 + 18, y0 + 15], dtype=torch.float32))
            labels.append(int(rng.integers(1, 6)))
        n = len(labels)
        preds.append({"boxes": torch.stack(boxes) if n else torch.zeros(0, 4),
                      "scores": torch.tensor(np.round(rng.random(n), 2), dtype=torch.float32),
                      "labels": torch.tensor(labels, dtype=torch.int64),
                      "masks": torch.stack(masks) if n else torch.zeros(0, h, w, dtype=torch.uint8)})
    return preds


def _pycocotools_stats(preds, targets, iou_type: str) -> np.ndarray:
    """pycocotools' 12 numbers, the inputs written out from the tensors independently."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, results = [], [], []
    for p, t in zip(preds, targets):
        h, w = t["masks"].shape[-2:]
        img = int(t["image_id"])
        images.append({"id": img, "height": h, "width": w})
        for j in range(len(t["labels"])):
            x0, y0, x1, y1 = t["boxes"][j].tolist()
            rle = mask_utils.encode(np.asfortranarray(t["masks"][j].numpy()))
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": int(t["labels"][j]),
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(t["area"][j]),
                         "iscrowd": 0, "segmentation": rle})
        for j in range(len(p["labels"])):
            x0, y0, x1, y1 = p["boxes"][j].tolist()
            r = {"image_id": img, "category_id": int(p["labels"][j]), "score": float(p["scores"][j]),
                 "bbox": [x0, y0, x1 - x0, y1 - y0]}
            if iou_type == "segm":
                r["segmentation"] = mask_utils.encode(np.asfortranarray(p["masks"][j].numpy()))
            results.append(r)
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": k, "name": str(k)} for k in range(1, 6)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:12]


def test_mask_ap_equals_pycocotools_on_the_same_inputs():
    from zoo.models.segmentation.mask_rcnn import MaskRCNN

    data = ShapesData(num_val=40, with_masks=True)
    ds = data.dataset("val")
    targets = [ds[i][1] for i in range(len(ds))]
    images = [torch.zeros(3, 128, 128)] * len(targets)
    preds = _noisy_predictions(targets, seed=3)
    ev = get_task("detection").build_evaluator(MaskRCNN.__new__(MaskRCNN), data.meta)
    for i in range(0, len(targets), 7):  # batches of uneven size
        ev.update(preds[i:i + 7], (images[i:i + 7], targets[i:i + 7]))
    m = ev.compute()
    np.testing.assert_allclose([m[f"mask_{k}"] for k in MASK_KEYS], _pycocotools_stats(preds, targets, "segm"),
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose([m[k] for k in MASK_KEYS], _pycocotools_stats(preds, targets, "bbox"),
                               rtol=0, atol=1e-9)
    assert 0.05 < m["mask_map"] < 0.9 and m["mask_map"] != m["map"]


def test_saved_mask_predictions_score_back_to_the_same_numbers(tmp_path):
    """Validation's numbers == those of the COCO results file the task writes, scored by
    ``evaluate.py task=detection iou_type=segm`` against the exported ground truth."""
    from zoo.data.shapes import export_coco
    from zoo.metrics.files import evaluate_files
    from zoo.models.segmentation.mask_rcnn import MaskRCNN

    data = ShapesData(num_val=30, with_masks=True)
    ds = data.dataset("val")
    task = get_task("detection")
    ev = task.build_evaluator(MaskRCNN.__new__(MaskRCNN), data.meta)
    pairs = []
    for i in range(0, len(ds), 8):
        batch = data.collate_fn([ds[j] for j in range(i, min(i + 8, len(ds)))])
        preds = _noisy_predictions(batch.targets, seed=i)
        ev.update(preds, batch)
        pairs.append((preds, batch))
    want = ev.compute()
    assert task.save_predictions(tmp_path / "results.json", pairs, data.meta) > 0
    export_coco(data, tmp_path / "gt", splits=("val",))
    for iou_type, prefix in (("segm", "mask_"), ("bbox", "")):
        got = evaluate_files({"task": "detection", "iou_type": iou_type, "protocol": "coco",
                              "gt": str(tmp_path / "gt" / "annotations" / "instances_val.json"),
                              "predictions": str(tmp_path / "results.json"),
                              "output": str(tmp_path / f"{iou_type}.json")})
        for key in MASK_KEYS:  # the file rounds scores to 1e-5 and boxes to 1e-3 pixel
            assert got[key] == pytest.approx(want[prefix + key], abs=1e-4), (iou_type, key)
    assert want["mask_map_50"] > 0.2


# -- the commands ----------------------------------------------------------------------------------
def test_train_evaluate_results_file_and_predict_round_trip(train, tmp_path, capsys):
    from zoo.cli import evaluate_main, predict_main
    from zoo.data.shapes import export_coco
    from zoo.engine.config import build
    from zoo.engine.run import load_run_config

    run = tmp_path / "run"
    small = ["data.num_train=8", "data.num_val=6", "data.num_test=2", "data.image_size=64",
             "data.batch_size=2", "data.eval_batch_size=4", "model.score_thresh=0.0"]
    torch.manual_seed(0)
    assert train("model=mask_rcnn", "trainer=debug", "trainer.max_steps=2", f"hydra.run.dir={run}",
                 *small) == 0
    assert list((run / "images").glob("*instances*.png"))
    results = tmp_path / "results.json"
    assert evaluate_main([f"run={run}", "split=val", f"ckpt={run / 'checkpoints' / 'last.pt'}",
                          f"save_predictions={results}"]) == 0
    metrics = json.loads((run / "eval_val" / "metrics.json").read_text())
    validation = json.loads((run / "metrics.json").read_text())  # the last validation, same weights
    for key in ("map", "map_50", "mask_map", "mask_map_50", "mask_map_small"):
        assert isinstance(metrics[key], float) and (0 <= metrics[key] <= 1 or metrics[key] == -1)
        assert validation[key] == metrics[key]
    rows = json.loads(results.read_text())
    assert rows and {"image_id", "category_id", "bbox", "score", "segmentation"} <= set(rows[0])

    # The same split as COCO ground truth: the results file scores back to the same numbers.
    gt = tmp_path / "gt"
    export_coco(build(load_run_config(run).data, "data"), gt, splits=("val",))
    gt_file = gt / "annotations" / "instances_val.json"
    for iou_type, prefix in (("segm", "mask_"), ("bbox", "")):
        out = tmp_path / f"file_{iou_type}.json"
        assert evaluate_main(["task=detection", f"gt={gt_file}", f"predictions={results}",
                              f"iou_type={iou_type}", "protocol=coco", f"output={out}"]) == 0
        scored = json.loads(out.read_text())
        for key in MASK_KEYS:
            # the file rounds scores to 1e-5 and boxes to 1e-3 pixel
            assert scored[key] == pytest.approx(metrics[prefix + key], abs=1e-3), (iou_type, key)

    pictures = tmp_path / "pictures"
    capsys.readouterr()
    assert predict_main([f"run={run}", f"source={gt / 'val'}", f"output={pictures}",
                         "score_thresh=0.0"]) == 0
    assert len(list(pictures.glob("*_instances.png"))) == 6
    instance_map = np.asarray(Image.open(pictures / "000000_instances.png"))
    assert instance_map.shape == (64, 64)
    found = json.loads((pictures / "detections.json").read_text())
    first = [r for r in found if r["file_name"] == "000000.jpg"]
    assert {r["instance"] for r in first} >= set(np.unique(instance_map).tolist()) - {0}
    assert all("segmentation" in r for r in found)


@pytest.mark.slow
def test_mask_rcnn_overfits_one_image():
    """The mask head learns: one scene of four or more objects reaches mask AP@0.5 of 1
    (measured: 50 steps; mask AP@[.5:.95] about 0.7, the 28x28 masks' resolution)."""
    from zoo.models.segmentation.mask_rcnn import MaskRCNN

    torch.manual_seed(0)
    data = ShapesData(num_val=10, hflip=0.0, with_masks=True)
    ds = data.dataset("val")
    i = next(i for i in range(len(ds)) if len(ds[i][1]["labels"]) >= 4)
    batch = data.collate_fn([ds[i]])
    model = MaskRCNN(num_classes=5)
    overfit(model, batch, 80)
    ev = get_task("detection").build_evaluator(model, data.meta)
    ev.update(model.predict(batch), batch)
    out = ev.compute()
    assert out["mask_map_50"] == pytest.approx(1.0) and out["map_50"] == pytest.approx(1.0)
    assert out["mask_map"] > 0.5


def test_mask_rcnn_trains_on_coco_masks_on_disk(train, tmp_path, capsys):
    """model=mask_rcnn turns data.with_masks on for data=coco too: polygons and RLEs reach
    the model through the training augmentation, and the run reports mask AP."""
    root, run = tmp_path / "coco", tmp_path / "run"
    _coco_with_masks(root)
    with pytest.warns(UserWarning, match="dropped 1"):
        assert train("model=mask_rcnn", "data=coco", f"data.root={root}", "data.image_size=64",
                     "data.num_workers=0", "data.batch_size=1", "trainer=debug", "trainer.max_steps=2",
                     "model.score_thresh=0.0", f"hydra.run.dir={run}") == 0
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["monitor"] == "mask_map_50" and "mask_map" in summary
    voc = tmp_path / "voc"  # boxes only: a one-line error, not a failure inside the model
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><size><width>8</width><height>8</height></size><object><name>cat</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        "</annotation>")
    capsys.readouterr()
    assert train("model=mask_rcnn", "data=voc", f"data.root={voc}", "trainer=debug",
                 f"hydra.run.dir={tmp_path / 'run_voc'}") == 2
    assert "hold boxes only" in capsys.readouterr().err


def test_semantic_map_survives_an_image_with_as_many_boxes_as_rows():
    """SanitizeBoundingBoxes indexes every Mask by the kept boxes; the (H, W) semantic
    map is not per box and must come through whole even when N boxes == H rows."""
    from zoo.data.detection import DetectionTransform

    h = w = 4
    boxes = torch.tensor([[0, 0, 2, 2], [1, 1, 3, 3], [0, 0, 0, 0], [2, 2, 4, 4]], dtype=torch.float32)
    semantic = torch.arange(h * w).reshape(h, w)
    target = {"boxes": boxes, "labels": torch.arange(4), "semantic": semantic}
    _, out = DetectionTransform([])(torch.zeros(3, h, w, dtype=torch.uint8), target)
    assert len(out["boxes"]) == 3  # the degenerate box is dropped
    assert torch.equal(out["semantic"], semantic)
