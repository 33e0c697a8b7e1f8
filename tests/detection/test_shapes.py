"""The synthetic shapes scenes: deterministic, consistent boxes/masks/semantic maps, the
promised variety, and an export that the COCO reader loads back identically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zoo.data.detection import CocoData
from zoo.data.shapes import ShapesData, export_coco, main
from zoo.errors import DataError


@pytest.fixture(scope="module")
def data() -> ShapesData:
    return ShapesData(num_train=40, num_val=60, num_test=10, with_masks=True, hflip=0.0)


def test_scenes_are_deterministic_and_splits_differ(data):
    again = ShapesData(num_train=40, num_val=60, num_test=10, with_masks=True, hflip=0.0, cache=False)
    a, b = data.dataset("val")[5], again.dataset("val")[5]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    assert not torch.equal(data.dataset("train")[5][0], a[0])
    other = ShapesData(num_val=60, seed=1, hflip=0.0).dataset("val")[5]
    assert not torch.equal(other[0], a[0])


def test_targets_are_consistent(data):
    ds = data.dataset("val")
    counts, empty, sizes, labels = [], 0, [], set()
    for i in range(len(ds)):
        image, t = ds[i]
        n = len(t["labels"])
        assert image.shape == (3, 128, 128) and 0 <= image.min() and image.max() <= 1
        assert t["boxes"].shape == (n, 4) and t["masks"].shape == (n, 128, 128)
        assert t["labels"].dtype == torch.int64 and t["image_id"] == i
        assert ((t["labels"] >= 1) & (t["labels"] <= 5)).all()
        for j in range(n):  # each box is the tight box of its visible mask
            ys, xs = torch.nonzero(t["masks"][j], as_tuple=True)
            assert t["boxes"][j].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert t["area"][j] == t["masks"][j].sum()
        # Visible masks never overlap; the semantic map is their union, by class.
        assert t["masks"].sum(0).max() <= 1
        expect = (t["masks"] * t["labels"][:, None, None]).sum(0)
        assert torch.equal(t["semantic"], expect)
        counts.append(n)
        empty += n == 0
        sizes += (t["boxes"][:, 2:] - t["boxes"][:, :2]).max(1).values.tolist()
        labels |= set(t["labels"].tolist())
    assert labels == {1, 2, 3, 4, 5} and max(counts) >= 5 and empty >= 1
    assert min(sizes) < 16 and max(sizes) > 48  # small and large objects relative to 128 px


def test_box_sizes_for_anchor_fitting(data):
    wh = data.dataset("val").box_sizes(limit=10)
    assert wh.shape[1] == 2 and ((wh > 0) & (wh <= 1)).all()


def test_bad_class_choice_raises():
    with pytest.raises(DataError, match="num_classes"):
        ShapesData(num_classes=9)


def test_export_reads_back_through_the_coco_reader(tmp_path, data):
    export_coco(data, tmp_path, splits=("val",))
    ann = json.loads((tmp_path / "annotations" / "instances_val.json").read_text())
    assert len(ann["images"]) == 60 and ann["categories"][0]["name"] == "circle"
    coco = CocoData(root=str(tmp_path), num_classes=5, train_split="val", val_split="val",
                    image_dir="{split}")
    ours, theirs = data.dataset("val"), coco.dataset("val")
    for i in (0, 7, 33):
        (img_a, a), (img_b, b) = ours[i], theirs[i]
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])
        assert b["image_id"] == i and torch.equal(a["area"], b["area"])
        assert (img_a - img_b).abs().mean() < 0.04  # JPEG at quality 95 of noisy scenes
    # RLE masks decode to the instance masks.
    from pycocotools import mask as mask_utils

    first = next(a for a in ann["annotations"] if a["image_id"] == 0)
    m = mask_utils.decode({**first["segmentation"], "counts": first["segmentation"]["counts"].encode()})
    assert np.array_equal(m, ours[0][1]["masks"][0].numpy())


def test_export_command(tmp_path, capsys):
    main(["export", str(tmp_path), "--splits", "test", "--num-test", "3"])
    assert len(list((tmp_path / "test").glob("*.jpg"))) == 3
    assert "wrote test" in capsys.readouterr().out
