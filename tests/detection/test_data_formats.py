"""COCO json, Pascal VOC and YOLO txt fixtures of the same scenes (written here) load into
identical targets; COCO category ids survive the round trip to a results file that
pycocotools accepts; bad boxes are clipped or dropped with one counted warning;
missing or malformed datasets raise DataError."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from zoo.data.detection import (
    VOC_CLASSES,
    CocoData,
    DetectionTransform,
    VocData,
    YoloTxtData,
    build_detection_transforms,
    collate_detection,
)
from zoo.errors import DataError

NAMES = ["ant", "bee", "cow"]
CAT_IDS = [3, 7, 12]  # non-contiguous, as in COCO
# (file stem, width, height, [(x0, y0, x1, y1, label, crowd, difficult), ...]); integer
# corners so VOC's 1-based pixel indices are exact.
SCENES = [
    ("img0", 100, 80, [(10, 20, 50, 60, 1, 0, 0), (60, 5, 95, 40, 3, 0, 1)]),
    ("img1", 64, 48, []),
    ("img2", 120, 90, [(0, 0, 30, 30, 2, 0, 0), (40, 40, 100, 88, 1, 1, 0)]),
]


def _image(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(w * h)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def write_coco(root: Path, extra_anns: list[dict] | None = None) -> None:
    images, anns = [], []
    for i, (stem, w, h, objs) in enumerate(SCENES):
        _image(root / "val2017" / f"{stem}.jpg", w, h)
        images.append({"id": 100 + i, "file_name": f"{stem}.jpg", "width": w, "height": h})
        for x0, y0, x1, y1, lab, crowd, _ in objs:
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": CAT_IDS[lab - 1],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": crowd})
    anns += extra_anns or []
    cats = [{"id": c, "name": n} for c, n in zip(CAT_IDS, NAMES)]
    (root / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats}))
    (root / "train2017").symlink_to(root / "val2017")


def write_voc(root: Path) -> None:
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for stem, w, h, objs in SCENES:
        _image(root / "JPEGImages" / f"{stem}.jpg", w, h)
        xml = [f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>"]
        for x0, y0, x1, y1, lab, _, diff in objs:
            xml.append(f"<object><name>{NAMES[lab - 1]}</name><difficult>{diff}</difficult>"
                       f"<bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax>"
                       f"<ymax>{y1}</ymax></bndbox></object>")
        (root / "Annotations" / f"{stem}.xml").write_text("".join(xml) + "</annotation>")
    for split in ("train", "val"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(s[0] for s in SCENES) + "\n")


def write_yolo(root: Path) -> None:
    for stem, w, h, objs in SCENES:
        _image(root / "images" / "val" / f"{stem}.jpg", w, h)
        if not objs:
            continue  # a missing label file is an image without objects
        lines = [f"{lab - 1} {(x0 + x1) / 2 / w:.8f} {(y0 + y1) / 2 / h:.8f} {(x1 - x0) / w:.8f} "
                 f"{(y1 - y0) / h:.8f}" for x0, y0, x1, y1, lab, _, _ in objs]
        (root / "labels" / "val").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "val" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("train: images/val\nval: images/val\nnames: [ant, bee, cow]\n")


def _expected(stem_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
    objs = SCENES[stem_idx][3]
    boxes = torch.tensor([o[:4] for o in objs], dtype=torch.float32).reshape(-1, 4)
    return boxes, torch.tensor([o[4] for o in objs], dtype=torch.int64)


def _check_same_targets(ds) -> None:
    assert len(ds) == len(SCENES)
    for i in range(len(SCENES)):
        image, t = ds[i]
        boxes, labels = _expected(i)
        _, w, h, _ = SCENES[i]
        assert image.shape == (3, h, w) and image.dtype == torch.float32 and image.max() <= 1
        torch.testing.assert_close(t["boxes"], boxes, atol=1e-3, rtol=0)
        assert torch.equal(t["labels"], labels)
        assert t["boxes"].shape == (len(labels), 4) and t["iscrowd"].shape == labels.shape


def test_three_formats_load_identical_targets(tmp_path):
    write_coco(tmp_path / "coco")
    write_voc(tmp_path / "voc")
    write_yolo(tmp_path / "yolo")
    coco = CocoData(root=str(tmp_path / "coco"), num_classes=3, batch_size=2)
    voc = VocData(root=str(tmp_path / "voc"), num_classes=3, class_names=NAMES, batch_size=2)
    yolo = YoloTxtData(root=str(tmp_path / "yolo"), num_classes=3, batch_size=2)
    for data in (coco, voc, yolo):
        assert data.meta["class_names"] == NAMES
        _check_same_targets(data.dataset("val"))
        images, targets = data.collate_fn([data.dataset("val")[i] for i in range(3)])
        assert isinstance(images, list) and len(targets) == 3 and targets[1]["boxes"].shape == (0, 4)
    # Format-specific fields: COCO ids and crowd flags, VOC difficult flags.
    ct = coco.dataset("val")[2][1]
    assert ct["image_id"] == 102 and ct["iscrowd"].tolist() == [0, 1]
    assert coco.meta["label_to_cat_id"] == {1: 3, 2: 7, 3: 12}
    assert voc.dataset("val")[0][1]["difficult"].tolist() == [False, True]


def test_coco_category_ids_survive_results_round_trip(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from zoo.tasks.detection import save_predictions

    write_coco(tmp_path / "coco")
    data = CocoData(root=str(tmp_path / "coco"), num_classes=3, eval_batch_size=3)
    ds = data.dataset("val")
    batch = collate_detection([ds[i] for i in range(len(ds))])
    # Perfect detections of every non-crowd object, in labels 1..K.
    preds = []
    for t in batch[1]:
        keep = t["iscrowd"] == 0
        preds.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep],
                      "scores": torch.linspace(0.9, 0.5, int(keep.sum()))})
    out = tmp_path / "results.json"
    n = save_predictions(out, [(preds, batch)], data.meta)
    rows = json.loads(out.read_text())
    assert n == len(rows) == 3
    assert sorted(r["category_id"] for r in rows) == [3, 7, 12]  # labels 1, 3 (img0) and 2 (img2)
    gt = COCO(str(tmp_path / "coco" / "annotations" / "instances_val2017.json"))
    ev = COCOeval(gt, gt.loadRes(str(out)), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_bad_boxes_are_clipped_or_dropped_with_one_warning(tmp_path):
    extra = [
        {"id": 90, "image_id": 100, "category_id": 3, "bbox": [90, 70, 30, 30], "iscrowd": 0},  # clipped
        {"id": 91, "image_id": 100, "category_id": 3, "bbox": [20, 20, 0, 10], "iscrowd": 0},   # zero width
        {"id": 92, "image_id": 100, "category_id": 7, "bbox": [200, 5, 10, 10], "iscrowd": 0},  # outside
    ]
    write_coco(tmp_path / "coco", extra)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = CocoData(root=str(tmp_path / "coco"), num_classes=3)  # reads val when built
        ds = data.dataset("val")
    msgs = [str(w.message) for w in caught if "boxes" in str(w.message)]
    assert len(msgs) == 1 and "clipped 1" in msgs[0] and "dropped 2" in msgs[0]
    t = ds[0][1]
    assert len(t["boxes"]) == 3 and t["boxes"][-1].tolist() == [90, 70, 100, 80]


def test_transforms_move_boxes_and_keep_fields_aligned():
    image = torch.zeros(3, 40, 100, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0], [70.0, 0.0, 100.0, 40.0]]),
              "labels": torch.tensor([1, 2]), "iscrowd": torch.tensor([0, 1]),
              "area": torch.tensor([400.0, 1200.0]), "image_id": 7}
    flip = build_detection_transforms(True, hflip=1.0)
    _, t = flip(image, target)
    assert t["boxes"].tolist() == [[70, 5, 90, 25], [0, 0, 30, 40]]
    assert t["image_id"] == 7 and type(t["boxes"]) is torch.Tensor
    # A quarter turn moves the box with the pixels it covers.
    square = image.clone()
    square[:, 5:25, 10:30] = 255
    img, t = build_detection_transforms(True, hflip=0.0, rot90=1.0)(square, target)
    ys, xs = torch.nonzero(img[0] > 0, as_tuple=True)
    assert img.shape == (3, 100, 40)
    assert t["boxes"][0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # A transform that pushes one box out of the image drops it with its crowd flag and area.
    from torchvision.transforms import v2

    shift = DetectionTransform([v2.RandomAffine(degrees=0, translate=(0.5, 0), fill=0)])
    torch.manual_seed(3)
    for _ in range(20):
        _, t = shift(image, target)
        n = len(t["boxes"])
        assert t["labels"].shape == t["iscrowd"].shape == t["area"].shape == (n,)
    assert build_detection_transforms(False) is None
    jitter = build_detection_transforms(True, hflip=0.0, color=1.0, crop=True, size=64,
                                        scale_range=(0.5, 1.0))
    img, t = jitter(image, {**target, "boxes": target["boxes"][:0], "labels": target["labels"][:0],
                            "iscrowd": target["iscrowd"][:0], "area": target["area"][:0]})
    assert max(img.shape[-2:]) <= 64 and t["boxes"].shape == (0, 4)


def test_missing_or_malformed_datasets_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="annotations/instances"):
        CocoData(root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="JPEGImages"):
        VocData(root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="data.yaml"):
        YoloTxtData(root=str(tmp_path / "nowhere"))
    write_yolo(tmp_path / "yolo")
    with pytest.raises(DataError, match="num_classes=3"):
        YoloTxtData(root=str(tmp_path / "yolo"), num_classes=80)
    (tmp_path / "yolo" / "labels" / "val" / "img0.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match="outside 0..2"):
        YoloTxtData(root=str(tmp_path / "yolo"), num_classes=3).dataset("val")
    write_voc(tmp_path / "voc")
    with pytest.raises(DataError, match="not one of"):
        VocData(root=str(tmp_path / "voc"), num_classes=2, class_names=["ant", "bee"]).dataset("val")
    (tmp_path / "voc" / "JPEGImages" / "img1.jpg").write_bytes(b"not a jpeg")
    ds = VocData(root=str(tmp_path / "voc"), num_classes=3, class_names=NAMES).dataset("val")
    with pytest.raises(DataError, match="img1.jpg"):
        ds[1]


@pytest.mark.parametrize("fmt, writer, model", [("coco", write_coco, "yolo"), ("voc", write_voc, "ssd"),
                                                ("yolo_txt", write_yolo, "yolov1")])
def test_train_and_evaluate_on_a_dataset_on_disk(train, tmp_path, fmt, writer, model):
    """One override moves a detector from the synthetic shapes to a dataset on disk;
    evaluation writes results with the dataset's own category ids."""
    from zoo.cli import evaluate_main

    root, run = tmp_path / "data", tmp_path / "run"
    writer(root)
    # data.root alone: the class count and names are read from the files before the model
    # is built, and the run's config records them.
    assert train(f"model={model}", f"data={fmt}", f"data.root={root}",
                 "data.image_size=64", "data.num_workers=0", "data.batch_size=2",
                 "trainer=debug", "trainer.max_steps=2", "model.score_thresh=0.0",
                 f"hydra.run.dir={run}") == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["num_classes"] == saved["model"]["num_classes"] == 3
    assert saved["data"]["class_names"] == NAMES
    results = tmp_path / "results.json"
    assert evaluate_main([f"run={run}", "split=val", f"save_predictions={results}"]) == 0
    metrics = json.loads((run / "eval_val" / "metrics.json").read_text())
    assert set(metrics["per_class"]) == set(NAMES) and 0 <= metrics["map_50"] <= 1
    rows = json.loads(results.read_text())
    expected_ids = set(CAT_IDS) if fmt == "coco" else {1, 2, 3}
    assert rows and {r["category_id"] for r in rows} <= expected_ids


def test_voc_class_names_given_as_a_string_is_a_data_error(tmp_path):
    write_voc(tmp_path / "voc")
    with pytest.raises(DataError, match="data.class_names must be a list"):
        VocData(root=str(tmp_path / "voc"), num_classes=3, class_names="ant")


WRITERS = {"coco": write_coco, "voc": write_voc, "yolo_txt": write_yolo}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_class_metadata_is_read_from_the_files_and_checked(config_dir, tmp_path, fmt):
    from zoo.engine.config import compose
    from zoo.errors import UserError

    root = tmp_path / "data"
    WRITERS[fmt](root)
    base = ["model=yolo", f"data={fmt}", f"data.root={root}"]
    cfg = compose(config_dir, "train", base)
    assert cfg.data.num_classes == 3 and list(cfg.data.class_names) == NAMES
    assert cfg.model.num_classes == 3  # ${data.num_classes} resolves to what the files hold
    # Values the config gives are checked against the files.
    assert compose(config_dir, "train", [*base, "data.num_classes=3"]).data.num_classes == 3
    with pytest.raises(UserError, match="set data.num_classes=3"):
        compose(config_dir, "train", [*base, "data.num_classes=5"])
    if fmt != "voc":
        with pytest.raises(UserError, match="leave data.class_names unset"):
            compose(config_dir, "train", [*base, "data.class_names=[cow,bee,ant]"])
    else:  # VOC: given names fix the classes and their order; others in the files are refused
        cfg = compose(config_dir, "train", [*base, "data.class_names=[cow,bee,ant]"])
        assert list(cfg.data.class_names) == ["cow", "bee", "ant"]
        with pytest.raises(DataError, match="not one of"):
            VocData(root=str(root), class_names=["ant", "bee"])


def test_voc_classes_all_from_voc_keep_the_20_devkit_classes(tmp_path):
    root = tmp_path / "voc"
    write_voc(root)
    for xml in (root / "Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace("<name>ant<", "<name>cat<")
                       .replace("<name>bee<", "<name>dog<").replace("<name>cow<", "<name>cow<"))
    data = VocData(root=str(root))
    assert data.meta["class_names"] == list(VOC_CLASSES) and data.meta["num_classes"] == 20
    labels = data.dataset("val")[0][1]["labels"].tolist()
    assert labels == [VOC_CLASSES.index("cat") + 1, VOC_CLASSES.index("cow") + 1]


@pytest.mark.parametrize("fmt", ["coco", "voc"])
def test_missing_image_is_found_when_the_data_is_built(train, tmp_path, capsys, fmt):
    root, run = tmp_path / "data", tmp_path / "run"
    WRITERS[fmt](root)
    folder = root / ("val2017" if fmt == "coco" else "JPEGImages")
    (folder / "img2.jpg").unlink()
    (folder / "img1.jpg").unlink()
    cls = CocoData if fmt == "coco" else VocData
    with pytest.raises(DataError, match=r"2 of the 3 images of the val(2017)? split are missing, "
                                        r"e\.g\. .*img1\.jpg"):
        cls(root=str(root))
    capsys.readouterr()
    assert train("model=yolov1", f"data={fmt}", f"data.root={root}", "data.num_workers=0",
                 "trainer=debug", f"hydra.run.dir={run}") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 2 of the 3 images") and len(err.splitlines()) == 1, err
    assert not (run / "checkpoints").exists()  # before the first step


def test_missing_training_image_stops_before_the_first_step(train, tmp_path, capsys):
    root, run = tmp_path / "coco", tmp_path / "run"
    write_coco(root)
    ann = root / "annotations" / "instances_train2017.json"
    coco = json.loads(ann.read_text())
    coco["images"].append({"id": 999, "file_name": "ghost.jpg", "width": 10, "height": 10})
    ann.write_text(json.dumps(coco))
    CocoData(root=str(root))  # the validation split is complete
    assert train("model=yolov1", "data=coco", f"data.root={root}", "data.num_workers=0",
                 "trainer=debug", "data.image_size=64", f"hydra.run.dir={run}") == 2
    err = capsys.readouterr().err.strip()
    assert "1 of the 4 images of the train2017 split are missing" in err and "ghost.jpg" in err, err
    assert not (run / "checkpoints" / "last.pt").exists()
