"""Detectors end to end: one image overfitted to near-perfect AP, anchors fitted when
training starts, and the train -> evaluate (COCO results file) -> predict (pictures)
path through the real command-line entries."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import overfit
from zoo.data.shapes import ShapesData
from zoo.metrics.detection import DetectionEvaluator
from zoo.models.detection.yolov2 import YOLOv2


def test_yolov2_overfits_one_image():
    torch.manual_seed(0)
    data = ShapesData(num_val=10, hflip=0.0)
    ds = data.dataset("val")
    i = next(i for i in range(len(ds)) if len(ds[i][1]["labels"]) >= 4)
    batch = ([ds[i][0]], [ds[i][1]])
    model = YOLOv2(num_classes=5, kmeans_anchors=False)
    overfit(model, batch, 100)
    ev = DetectionEvaluator(5, data.meta["class_names"])
    ev.update(model.predict(batch), batch)
    out = ev.compute()
    assert out["map_50"] == pytest.approx(1.0) and out["voc07_map"] == pytest.approx(1.0)
    assert out["map"] > 0.85


def test_anchors_are_fitted_on_training_boxes(tmp_path):
    data = ShapesData(num_train=30, num_val=4, num_test=4)
    model = YOLOv2(num_classes=5, kmeans_images=30)
    before = model.anchors.clone()
    model.on_train_start(data, str(tmp_path))
    saved = json.loads((tmp_path / "anchors.json").read_text())
    assert not torch.equal(before, model.anchors)
    torch.testing.assert_close(torch.tensor(saved["anchors_wh_relative"]), model.anchors, atol=1e-4,
                               rtol=0)
    assert model.anchors.prod(1).diff().gt(0).all() and "anchors" in model.state_dict()


def test_train_evaluate_predict_commands(train, tmp_path, capsys):
    from zoo.cli import evaluate_main, predict_main
    from zoo.data.shapes import export_coco

    run = tmp_path / "run"
    small = ["data.num_train=64", "data.num_val=16", "data.num_test=16", "model.kmeans_images=16",
             "model.score_thresh=0.0"]  # an untrained model scores every box below 0.01
    assert train("model=yolo", "trainer=debug", "trainer.max_steps=2", f"hydra.run.dir={run}",
                 *small) == 0
    assert (run / "anchors.json").is_file() and list((run / "images").glob("*.png"))

    results = tmp_path / "results.json"
    assert evaluate_main([f"run={run}", f"save_predictions={results}"]) == 0
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    for key in ("map", "map_50", "map_75", "map_small", "mar_100", "voc07_map", "voc12_map"):
        assert isinstance(metrics[key], float)
    assert set(metrics["per_class"]) == {"circle", "square", "triangle", "star", "cross"}
    rows = json.loads(results.read_text())
    assert rows and {"image_id", "category_id", "bbox", "score"} <= set(rows[0])
    assert {r["image_id"] for r in rows} <= set(range(16))

    images = tmp_path / "export"
    export_coco(ShapesData(num_test=2), images, splits=("test",))
    out, det_json = tmp_path / "pictures", tmp_path / "detections.json"
    capsys.readouterr()
    assert predict_main([f"run={run}", f"source={images / 'test'}", f"output={out}",
                         f"json={det_json}", "score_thresh=0.0"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png", "000001.png"]
    assert "000000.jpg:" in capsys.readouterr().out
    assert isinstance(json.loads(det_json.read_text()), list)
    assert predict_main([f"run={run}", f"source={tmp_path / 'missing'}"]) == 2
    assert predict_main([f"run={run}", f"source={images / 'test'}", "colour=red"]) == 2


@pytest.mark.parametrize("name", ["yolov1.YOLOv1", "yolov2.YOLOv2", "ssd.SSD", "faster_rcnn.FasterRCNN"])
def test_images_without_objects_and_crowds_train(name):
    import importlib

    module, cls = name.split(".")
    torch.manual_seed(0)
    model = getattr(importlib.import_module(f"zoo.models.detection.{module}"), cls)(num_classes=3,
                                                                                     image_size=64)
    model.train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "iscrowd": torch.zeros(0, dtype=torch.int64), "image_id": 0}
    crowd_only = {"boxes": torch.tensor([[5.0, 5.0, 40.0, 40.0]]), "labels": torch.tensor([2]),
                  "iscrowd": torch.tensor([1]), "image_id": 1}
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 80)]
    torch.manual_seed(1)  # the same dropout mask in both calls
    losses = model.training_step((images, [empty, crowd_only]))
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    # A crowd region is no object to learn: the losses equal those of an empty image.
    if module.startswith("yolo"):
        torch.manual_seed(1)
        again = model.training_step((images, [empty, {**empty, "image_id": 1}]))
        for k in losses:
            torch.testing.assert_close(losses[k], again[k])


def test_training_targets_drop_crowds():
    from zoo.models.detection.base import training_targets

    t = {"boxes": torch.tensor([[0.0, 0, 5, 5], [1, 1, 9, 9]]), "labels": torch.tensor([1, 2]),
         "iscrowd": torch.tensor([0, 1])}
    out = training_targets([t])[0]
    assert out["labels"].tolist() == [1] and out["boxes"].tolist() == [[0, 0, 5, 5]]
