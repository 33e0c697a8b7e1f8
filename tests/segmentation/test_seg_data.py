"""Segmentation data: the synthetic label maps, VOC palette PNGs with their 255 border,
the image/mask folder pair, joint augmentation and padding collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.segmentation.seg_fixtures import fake_voc, mask_folder
from zoo.data.batches import SegmentationBatch
from zoo.data.segmentation import (
    MaskFolderData,
    SegmentationTransform,
    ShapesSegData,
    VocSegData,
    collate_segmentation,
    read_label_png,
    voc_palette,
)
from zoo.errors import DataError


def test_shapes_seg_batches_are_label_maps_deterministic_by_seed():
    d = ShapesSegData(num_train=4, num_val=3, num_test=2, image_size=40)
    assert d.meta["num_classes"] == 4 and d.meta["class_names"][0] == "background"
    x, m = d.dataset("val")[1]
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert m.shape == (40, 40) and m.dtype == torch.int64 and int(m.max()) < 4
    x2, m2 = ShapesSegData(num_val=3, image_size=40).dataset("val")[1]
    assert torch.equal(x, x2) and torch.equal(m, m2)
    x3, _ = ShapesSegData(num_val=3, image_size=40, seed=1).dataset("val")[1]
    assert not torch.equal(x, x3)
    # the label map is the generator's semantic map: class k where shape k was drawn
    scene = d.dataset("val").scenes.scene(1)
    assert torch.equal(m, torch.from_numpy(scene.semantic))
    b = d.collate_fn([d.dataset("val")[i] for i in range(3)])
    assert isinstance(b, SegmentationBatch) and b.images.shape == (3, 3, 40, 40) and b.masks.shape == (3, 40, 40)
    with pytest.raises(DataError, match="num_classes"):
        ShapesSegData(num_classes=1)


def test_joint_augmentation_moves_mask_with_image():
    torch.manual_seed(0)
    # the mask is a function of the image (class = red channel > 127): any geometric
    # transform applied to both keeps that true, nearest neighbours keep the classes
    img = torch.zeros(3, 24, 32, dtype=torch.uint8)
    img[0, 3:12, 5:20] = 255
    mask = (img[0] > 127).long() * 2
    tf = SegmentationTransform(hflip=0.5, vflip=0.5, rot90=0.5, scale_range=(0.5, 1.5), crop_size=20)
    for _ in range(20):
        i2, m2 = tf(img, mask)
        assert i2.shape[-2:] == m2.shape == (20, 20)
        assert set(m2.unique().tolist()) <= {0, 2, 255}
        known = m2 != 255
        agree = ((i2[0] > 127).long() * 2 == m2)[known].float().mean()
        assert agree > 0.9      # only antialiased edge pixels of the image may differ
        assert (i2[:, ~known] == 0).all()   # crop padding: image 0, mask ignored


def test_collate_pads_masks_with_ignore():
    items = [(torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64)),
             (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.int64))]
    b = collate_segmentation(items)
    assert b.images.shape == (2, 3, 6, 5) and b.masks.shape == (2, 6, 5)
    assert (b.masks[0, 4:] == 255).all() and (b.masks[1, :, 3:] == 255).all()
    assert (b.images[0, :, 4:] == 0).all()


def test_voc_palette_png_and_border_read_correctly(tmp_path):
    masks = fake_voc(tmp_path / "VOC2012")
    # the file really is a palette image whose colours are VOC's (person = (192, 128, 128))
    with Image.open(tmp_path / "VOC2012/SegmentationClass/2007_000002.png") as im:
        assert im.mode == "P"
        assert tuple(np.asarray(im.convert("RGB"))[5, 10]) == (192, 128, 128)
    d = VocSegData(root=str(tmp_path / "VOC2012"), crop_size=None, scale_range=None, hflip=0)
    assert d.meta["num_classes"] == 21 and d.meta["class_names"][15] == "person"
    x, m = d.dataset("val")[0]
    assert x.shape == (3, 20, 30)
    assert torch.equal(m, torch.from_numpy(masks["2007_000003"].astype(np.int64)))
    assert set(m.unique().tolist()) == {0, 15, 255}
    assert len(d.dataset("train")) == 2
    # an RGB export in VOC colours reads as the same indices
    rgb = tmp_path / "rgb.png"
    Image.fromarray(voc_palette()[masks["2007_000002"]]).save(rgb)
    assert torch.equal(read_label_png(rgb), torch.from_numpy(masks["2007_000002"].astype(np.int64)))
    # the border is not scored
    from zoo.metrics.segmentation import SegmentationEvaluator
    ev = SegmentationEvaluator(21)
    ev.update(torch.zeros_like(m)[None], (None, m[None]))
    assert ev.compute()["num_pixels"] == int((m != 255).sum())


@pytest.mark.parametrize("remove, expect", [
    ("", "root not found"), ("SegmentationClass", "SegmentationClass"),
    ("ImageSets/Segmentation/val.txt", "split list for 'val'"),
    ("JPEGImages/2007_000003.jpg", "image of '2007_000003'"),
])
def test_voc_missing_parts_are_one_line_data_errors(tmp_path, remove, expect):
    import shutil

    root = tmp_path / "VOC2012"
    if remove != "":
        fake_voc(root)
        target = root / remove
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    d = VocSegData(root=str(root))
    with pytest.raises(DataError, match=expect) as e:
        d.dataset("val")
    assert "\n" not in str(e.value)


def test_mask_folder_pairs_by_stem(tmp_path):
    mask_folder(tmp_path)
    d = MaskFolderData(root=str(tmp_path), num_classes=3, crop_size=None, scale_range=None)
    x, m = d.dataset("val")[0]
    assert x.shape == (3, 8, 10) and int(m.max()) == 2 and int((m == 2).sum()) == 12
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "images" / "val" / "lonely.jpg")
    with pytest.raises(DataError, match="have no mask.*lonely"):
        MaskFolderData(root=str(tmp_path), num_classes=3).dataset("val")
    small = MaskFolderData(root=str(tmp_path), num_classes=2, crop_size=None, scale_range=None)
    with pytest.raises(DataError, match="value 2 is neither a class"):
        small.dataset("train")[0]
    with pytest.raises(DataError, match="image folder for split .test."):
        MaskFolderData(root=str(tmp_path), num_classes=3, test_split="test").dataset("test")
