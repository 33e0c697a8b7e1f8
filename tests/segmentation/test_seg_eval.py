"""Semantic-segmentation evaluation: per-class keys, small-object IoU, the round trip of
saved label PNGs through file scoring, and predict.py's files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data.segmentation import ShapesSegData
from zoo.engine.evaluation import eval_loader, evaluate
from zoo.errors import UserError
from zoo.metrics.segmentation import SegmentationEvaluator, small_objects
from zoo.models.segmentation.unet import UNet
from zoo.tasks import get_task


def test_per_class_keys_and_absent_classes():
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    pred = torch.tensor([[[0, 0, 1, 2], [0, 0, 1, 1]]])
    ev = SegmentationEvaluator(4, ["bg", "a", "b", "never"])
    ev.update(pred, (None, target))
    m = ev.compute()
    assert m["iou_per_class"] == {"bg": 1.0, "a": 0.75, "b": 0.0, "never": None}
    assert m["dice_per_class"]["a"] == pytest.approx(6 / 7) and m["dice_per_class"]["never"] is None
    assert m["miou"] == pytest.approx((1 + 0.75 + 0) / 3)     # "never" left out of the mean


def test_small_object_iou_by_hand():
    t = torch.zeros(1, 20, 20, dtype=torch.int64)
    t[0, 0:2, 0:2] = 1          # 4 px
    t[0, 10:12, 10:13] = 2      # 6 px
    t[0, 3:15, 14:20] = 1       # 72 px: large
    p = t.clone()
    p[0, 0:2, 0:2] = 0          # the first small object missed
    p[0, 10:12, 13] = 2         # the second predicted 2 px too wide: IoU 6 / 8
    pairs = small_objects(p, t, small_area=0.05)     # limit 20 px: the two small ones
    assert sorted(pairs) == [(0, 4), (6, 8)]
    ev = SegmentationEvaluator(3, small_area=0.05)
    ev.update(p, (None, t))
    m = ev.compute()
    assert m["num_small_objects"] == 2 and m["small_object_iou"] == pytest.approx((0 + 6 / 8) / 2)
    # ignored pixels count toward neither the limit nor the union
    t2 = t.clone()
    t2[0, 19] = 255
    assert small_objects(p, t2, small_area=0.05) == pairs
    # the limit is a fraction of the scored pixels: 18 px is small in 400 (limit 20) but
    # not once 60 are ignored (limit 17)
    t3 = torch.zeros(1, 20, 20, dtype=torch.int64)
    t3[0, 5:8, 5:11] = 1
    assert len(small_objects(t3, t3, small_area=0.05)) == 1
    t3[0, 17:] = 255
    assert small_objects(t3, t3, small_area=0.05) == []
    ev2 = SegmentationEvaluator(3, small_area=0.0)
    ev2.update(p, (None, t))
    assert ev2.compute()["num_small_objects"] == 0 and math.isnan(ev2.compute()["small_object_iou"])


def test_small_object_iou_does_not_depend_on_batching():
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 3, (6, 16, 16), generator=g)
    p = torch.where(torch.rand(6, 16, 16, generator=g) < 0.8, t, torch.zeros_like(t))
    one, two = SegmentationEvaluator(3, small_area=0.05), SegmentationEvaluator(3, small_area=0.05)
    one.update(p, (None, t))
    for i in range(0, 6, 4):
        two.update(p[i:i + 4], (None, t[i:i + 4]))
    a, b = one.compute(), two.compute()
    assert a["small_object_iou"] == b["small_object_iou"] and a["num_small_objects"] > 0


def test_task_evaluator_settings():
    task = get_task("segmentation")
    ev = task.build_evaluator(None, {"num_classes": 3}, {"small_area": 0.05})
    assert ev.small_area == 0.05
    with pytest.raises(UserError, match="small_area"):
        task.build_evaluator(None, {"num_classes": 3}, {"small_area": 2})


def test_saved_predictions_round_trip_gives_the_same_metrics(tmp_path):
    from zoo.metrics.files import evaluate_files

    class Colours(torch.nn.Module):
        """Logits from the pixel colours: predictions that vary from pixel to pixel."""

        def predict(self, batch):
            images = batch.images
            return torch.cat([images, images.new_full(images[:, :1].shape, 0.5)], 1)

    data = ShapesSegData(num_val=6, image_size=32, eval_batch_size=4)
    model = Colours()
    task = get_task("segmentation")
    ev = task.build_evaluator(model, data.meta)
    loader = eval_loader(data, "val", torch.device("cpu"))
    direct = evaluate(model, loader, ev, torch.device("cpu"))
    pairs = [(model.predict(b), b) for b in loader]
    assert task.save_predictions(tmp_path / "pred", pairs, data.meta) == 6
    gt = tmp_path / "gt"
    gt.mkdir()
    n = 0
    for _, b in pairs:
        for m in b.masks:
            Image.fromarray(m.numpy().astype(np.uint8)).save(gt / f"{n:06d}.png")
            n += 1
    files = evaluate_files({"task": "segmentation", "gt": str(gt), "predictions": str(tmp_path / "pred"),
                            "num_classes": "4", "class_names": ",".join(data.meta["class_names"])})
    for key in ("miou", "mdice", "pixel_accuracy", "fw_iou", "num_pixels", "small_object_iou",
                "num_small_objects", "iou_per_class", "dice_per_class"):
        assert files[key] == direct[key], key
    assert direct["num_small_objects"] > 0 and 0.05 < direct["pixel_accuracy"] < 0.95


def test_predict_writes_label_maps_and_overlays(tmp_path, capsys):
    from types import SimpleNamespace

    torch.manual_seed(0)
    data = ShapesSegData(num_val=2, image_size=24)
    model = UNet(num_classes=4, depth=2, width=4).eval()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        Image.fromarray(data.dataset("val").scenes.scene(i).image).save(src / f"s{i}.png")
    Image.fromarray(np.zeros((13, 17, 3), np.uint8)).save(src / "odd.jpg")
    task = get_task("segmentation")
    run = SimpleNamespace(model=model, data=data, run_dir=tmp_path)
    written = task.predict(run, {"source": str(src)}, tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(
        f"{s}_{k}.png" for s in ("s0", "s1", "odd") for k in ("mask", "overlay"))
    want = model.predict(torch.zeros(1, 3, 13, 17)).argmax(1)[0]
    with Image.open(tmp_path / "out" / "odd_mask.png") as im:
        assert im.mode == "P" and im.size == (17, 13)
        assert torch.equal(torch.from_numpy(np.asarray(im, dtype=np.int64)), want)
    assert "odd.jpg:" in capsys.readouterr().out
    with pytest.raises(UserError, match="alpha"):
        task.predict(run, {"source": str(src), "alpha": "2"}, tmp_path / "out")
    with pytest.raises(UserError, match="neither an image nor a folder"):
        task.predict(run, {"source": str(tmp_path / "nope")}, None)
