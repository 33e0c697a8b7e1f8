"""The segmentation data configs through the real entry points: train.py on a fake VOC
folder and a mask-folder pair, then evaluate.py (the same numbers as the run's last
validation, label PNGs that file scoring reads back) and predict.py."""

from __future__ import annotations

import json

import pytest

from tests.helpers import one_line_error
from tests.segmentation.seg_fixtures import fake_voc, mask_folder
from zoo.cli import evaluate_main, predict_main

TINY = ["model=unet", "model.depth=2", "model.width=4", "trainer=debug", "trainer.max_steps=2",
        "trainer.limit_val_batches=null", "logger=none"]


def test_voc_seg_trains_and_evaluates_to_the_validation_numbers(train, tmp_path):
    fake_voc(tmp_path / "VOC2012")
    run = tmp_path / "run"
    assert train(*TINY, "data=voc_seg", f"data.root={tmp_path / 'VOC2012'}", "data.crop_size=16",
                 "data.batch_size=2", "data.num_workers=0", f"hydra.run.dir={run}") == 0
    last = json.loads((run / "metrics.json").read_text())
    assert evaluate_main([f"run={run}", f"ckpt={run / 'checkpoints' / 'last.pt'}", "split=val",
                          f"save_predictions={tmp_path / 'pred'}"]) == 0
    ev = json.loads((run / "eval_val" / "metrics.json").read_text())
    for key in ("miou", "mdice", "pixel_accuracy", "small_object_iou", "num_small_objects"):
        assert ev[key] == last[key] or (ev[key] != ev[key] and last[key] != last[key]), key
    assert set(ev["iou_per_class"]) == set(ev["dice_per_class"]) and "person" in ev["iou_per_class"]
    assert ev["num_pixels"] == 20 * 30 - 2 * 16     # the 255 border is not scored
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["000000.png"]
    assert predict_main([f"run={run}", f"source={tmp_path / 'VOC2012' / 'JPEGImages'}",
                         f"output={tmp_path / 'out'}"]) == 0
    assert len(list((tmp_path / "out").glob("*_mask.png"))) == 3


def test_mask_folder_trains(train, tmp_path):
    mask_folder(tmp_path / "masks")
    run = tmp_path / "run"
    assert train(*TINY, "data=mask_folder", f"data.root={tmp_path / 'masks'}", "data.num_classes=3",
                 "data.crop_size=8", "data.batch_size=2", "data.num_workers=0",
                 f"hydra.run.dir={run}") == 0
    assert "miou" in json.loads((run / "metrics.json").read_text())


def test_missing_voc_root_is_one_line(train, tmp_path, capsys):
    assert train(*TINY, "data=voc_seg", f"data.root={tmp_path / 'nope'}", "data.num_workers=0",
                 f"hydra.run.dir={tmp_path / 'run'}") == 2
    assert "VOC segmentation root not found" in one_line_error(capsys)


def test_predict_bad_option_is_one_line(train, tmp_path, capsys):
    mask_folder(tmp_path / "masks")
    run = tmp_path / "run"
    assert train(*TINY, "data=mask_folder", f"data.root={tmp_path / 'masks'}", "data.num_classes=3",
                 "data.crop_size=8", "data.batch_size=2", "data.num_workers=0",
                 f"hydra.run.dir={run}") == 0
    capsys.readouterr()
    assert predict_main([f"run={run}", f"source={tmp_path}", "alpha=3"]) == 2
    assert "alpha must be" in one_line_error(capsys)
    assert evaluate_main([f"run={run}", "evaluator.small_area=7"]) == 2
    assert "small_area" in one_line_error(capsys)


@pytest.mark.parametrize("loss", ["dice", "ce_dice", "edge_weighted_ce"])
def test_every_loss_trains_a_step(train, tmp_path, loss):
    assert train("model=unet", "model.depth=2", "model.width=4", "trainer=debug", "trainer.max_steps=1",
                 "logger=none", "data.num_train=8", "data.num_val=4", "data.batch_size=4",
                 f"model.loss={loss}", f"hydra.run.dir={tmp_path / 'run'}") == 0
