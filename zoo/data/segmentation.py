"""Semantic-segmentation data: images (B, 3, H, W) float in [0, 1] and label maps
(B, H, W) int64 class ids, 255 = ignore (``SegmentationBatch``).

* ``ShapesSegData`` (``data=shapes_seg``): the synthetic shapes scenes of
  ``zoo.data.shapes`` as label maps, class 0 background and 1..K the shapes; scene ``i``
  of a split depends only on ``(seed, split, i)``.
* ``VocSegData`` (``data=voc_seg``): Pascal VOC segmentation from a VOC2012-style folder:
  ``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png`` (palette PNGs whose indices
  are the classes; the 255 object border is ignored) and
  ``ImageSets/Segmentation/{train,val}.txt``.
* ``MaskFolderData`` (``data=mask_folder``): ``images/{train,val}/<stem>.jpg|png`` and
  ``masks/{train,val}/<stem>.png`` single-channel label maps with the same stems.

Training augmentation is joint (torchvision transforms v2 with the mask as a
``tv_tensors.Mask``, so every geometric op resizes it with nearest neighbours): random
scale, horizontal/vertical flips, quarter turns, and a crop to ``crop_size`` padded with 0
(image) and ``ignore_index`` (mask). Evaluation uses the images as they are; a batch of
different sizes is padded to its largest (mask padding ignored, so it is not scored).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule
from zoo.data.batches import SegmentationBatch
from zoo.data.images import IMAGE_SUFFIXES
from zoo.errors import DataError

IGNORE_INDEX = 255
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")


def voc_palette() -> np.ndarray:
    """(256, 3) uint8: the VOC devkit's colour map (bit-interleaved class index)."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def read_label_png(path: Path) -> torch.Tensor:
    """(H, W) int64 class ids of a label PNG: the indices of a palette PNG (VOC's
    ``SegmentationClass``), the values of a grey one, or an RGB PNG in VOC's colours."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("P", "L", "I", "I;16", "1"):
                arr = np.asarray(im, dtype=np.int64)
            elif im.mode in ("RGB", "RGBA"):
                rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
                code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
                pal = voc_palette().astype(np.int64)
                lut = {int(r << 16 | g << 8 | b): i for i, (r, g, b) in enumerate(pal)}
                values, inverse = np.unique(code, return_inverse=True)
                unknown = [v for v in values.tolist() if v not in lut]
                if unknown:
                    v = unknown[0]
                    raise DataError(f"{path}: colour ({v >> 16}, {v >> 8 & 255}, {v & 255}) is not in the "
                                    f"VOC palette; label PNGs hold class indices (palette or grey)")
                arr = np.asarray([lut[v] for v in values.tolist()], dtype=np.int64)[inverse].reshape(code.shape)
            else:
                raise DataError(f"{path} is a {im.mode} image; label PNGs must hold class indices "
                                f"(palette or grey)")
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"could not read label PNG {path}: {e}") from None
    return torch.from_numpy(np.ascontiguousarray(arr))


# -- augmentation ----------------------------------------------------------------------------
class SegmentationTransform:
    """Joint image/mask augmentation on (3, H, W) uint8 and (H, W) int64 (see the module
    docstring). ``scale_range`` multiplies both sides; ``crop_size`` crops (padding first)."""

    def __init__(self, *, hflip: float = 0.5, vflip: float = 0.0, rot90: float = 0.0,
                 scale_range: Sequence[float] | None = None, crop_size: int | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        self.scale_range = tuple(float(s) for s in scale_range) if scale_range else None
        ops: list[Any] = []
        if hflip > 0:
            ops.append(v2.RandomHorizontalFlip(hflip))
        if vflip > 0:
            ops.append(v2.RandomVerticalFlip(vflip))
        if rot90 > 0:
            ops.append(v2.RandomApply([v2.RandomRotation((90, 90), expand=True)], p=rot90))
        if crop_size:
            ops.append(v2.RandomCrop(int(crop_size), pad_if_needed=True,
                                     fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}))
        self.pipeline = v2.Compose(ops) if ops else None

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import functional as TF

        img, m = tv_tensors.Image(image), tv_tensors.Mask(mask)
        if self.scale_range is not None:
            lo, hi = self.scale_range
            s = lo + (hi - lo) * float(torch.rand(()))
            h, w = image.shape[-2:]
            size = [max(1, round(h * s)), max(1, round(w * s))]
            img, m = TF.resize(img, size, antialias=True), TF.resize(m, size)  # masks: nearest
        if self.pipeline is not None:
            img, m = self.pipeline(img, m)
        return img.as_subclass(torch.Tensor), m.as_subclass(torch.Tensor)


def collate_segmentation(items: Sequence[tuple[torch.Tensor, torch.Tensor]],
                         ignore_index: int = IGNORE_INDEX) -> SegmentationBatch:
    """(image, mask) pairs -> ``SegmentationBatch``; sizes that differ are padded at the
    bottom/right to the largest (images with 0, masks with ``ignore_index``)."""
    h = max(int(im.shape[-2]) for im, _ in items)
    w = max(int(im.shape[-1]) for im, _ in items)
    images = torch.zeros(len(items), items[0][0].shape[0], h, w, dtype=items[0][0].dtype)
    masks = torch.full((len(items), h, w), ignore_index, dtype=torch.int64)
    for i, (im, m) in enumerate(items):
        images[i, :, :im.shape[-2], :im.shape[-1]] = im
        masks[i, :m.shape[-2], :m.shape[-1]] = m
    return SegmentationBatch(images, masks)


# -- synthetic ---------------------------------------------------------------------------------
class ShapesSegDataset(Dataset):
    """(image (3, H, W) float in [0, 1], label map (H, W) int64) of the shapes scenes."""

    def __init__(self, scenes: Any, transform: SegmentationTransform | None = None) -> None:
        self.scenes = scenes              # a zoo.data.shapes.ShapesDataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        scene = self.scenes.scene(index)
        image = torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()
        mask = torch.from_numpy(scene.semantic)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image.float() / 255, mask


class ShapesSegData(DataModule):
    """Synthetic shapes scenes as label maps: ``num_classes`` counts the background (class
    0) and the shapes 1..K (``class_names`` starts with ``background``)."""

    def __init__(self, *, num_classes: int = 4, image_size: int = 64, num_train: int = 2000,
                 num_val: int = 200, num_test: int = 200, max_objects: int = 5,
                 min_size: float = 0.06, max_size: float = 0.5, empty_prob: float = 0.05,
                 seed: int = 0, hflip: float = 0.5, vflip: float = 0.5, rot90: float = 0.5,
                 scale_range: Sequence[float] | None = None, cache: bool = True,
                 ignore_index: int = IGNORE_INDEX, **kwargs: Any) -> None:
        from zoo.data.shapes import SHAPE_NAMES

        if not 2 <= int(num_classes) <= len(SHAPE_NAMES) + 1:
            raise DataError(f"shapes_seg: num_classes={num_classes} counts the background and the "
                            f"shapes; use 2..{len(SHAPE_NAMES) + 1}")
        shapes = list(SHAPE_NAMES[:int(num_classes) - 1])
        kwargs.pop("class_names", None)
        kwargs.pop("channels", None)
        super().__init__(num_classes=int(num_classes), image_size=image_size, channels=3,
                         ignore_index=ignore_index, **kwargs)
        self.meta["class_names"] = ["background", *shapes]
        self.render = {"image_size": image_size, "classes": shapes, "max_objects": max_objects,
                       "min_size": min_size, "max_size": max_size, "empty_prob": empty_prob}
        self.lengths = {"train": num_train, "val": num_val, "test": num_test}
        self.seed, self.cache = seed, cache
        self.augment = {"hflip": hflip, "vflip": vflip, "rot90": rot90, "scale_range": scale_range,
                        "crop_size": image_size if scale_range else None, "ignore_index": ignore_index}
        self.collate_fn = collate_segmentation

    def build(self, split: str) -> ShapesSegDataset:
        from zoo.data.shapes import ShapesDataset

        scenes = ShapesDataset(self.lengths[split], split=split, seed=self.seed, with_masks=True,
                               cache=self.cache, **self.render)
        tf = SegmentationTransform(**self.augment) if split == "train" else None
        return ShapesSegDataset(scenes, tf)


# -- on disk -----------------------------------------------------------------------------------
class PairDataset(Dataset):
    """(image, label map) pairs from ``(image path, mask path)`` items."""

    def __init__(self, items: Sequence[tuple[Path, Path]], transform: SegmentationTransform | None,
                 num_classes: int, ignore_index: int) -> None:
        self.items = list(items)
        self.transform = transform
        self.num_classes, self.ignore_index = num_classes, ignore_index

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from zoo.data.detection import decode_image_file

        img_path, mask_path = self.items[index]
        image = decode_image_file(img_path)
        mask = read_label_png(mask_path)
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise DataError(f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {img_path} "
                            f"is {image.shape[-1]}x{image.shape[-2]}")
        bad = (mask >= self.num_classes) & (mask != self.ignore_index)
        if bool(bad.any()):
            raise DataError(f"{mask_path}: value {int(mask[bad][0])} is neither a class in "
                            f"0..{self.num_classes - 1} nor the ignore index {self.ignore_index}; "
                            f"check data.num_classes")
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image.float() / 255, mask


class _DiskSegData(DataModule):
    """Shared part of the on-disk formats: splits, augmentation, class metadata."""

    def __init__(self, *, root: str, num_classes: int, class_names: Sequence[str] | None = None,
                 train_split: str = "train", val_split: str = "val", test_split: str | None = None,
                 crop_size: int | None = 320, scale_range: Sequence[float] | None = (0.5, 2.0),
                 hflip: float = 0.5, ignore_index: int = IGNORE_INDEX, **kwargs: Any) -> None:
        if num_classes is None or int(num_classes) < 2:
            raise DataError(f"data.num_classes must be given (2 or more, background included), got {num_classes}")
        names = list(class_names) if class_names else [str(i) for i in range(int(num_classes))]
        if len(names) != int(num_classes):
            raise DataError(f"data.class_names lists {len(names)} names for data.num_classes={num_classes}")
        kwargs.pop("image_size", None)
        kwargs.pop("channels", None)
        super().__init__(num_classes=int(num_classes), class_names=names, channels=3,
                         ignore_index=int(ignore_index), image_size=crop_size, **kwargs)
        self.root = Path(root).expanduser()
        self.split_names = {"train": train_split, "val": val_split, "test": test_split or val_split}
        self.augment = {"hflip": hflip, "scale_range": scale_range, "crop_size": crop_size,
                        "ignore_index": int(ignore_index)}
        self.collate_fn = collate_segmentation

    def items(self, split: str) -> list[tuple[Path, Path]]:
        raise NotImplementedError

    def build(self, split: str) -> PairDataset:
        tf = SegmentationTransform(**self.augment) if split == "train" else None
        return PairDataset(self.items(self.split_names[split]), tf, self.meta["num_classes"],
                           self.meta["ignore_index"])


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    return path


class VocSegData(_DiskSegData):
    """Pascal VOC segmentation (21 classes with the background) from ``root``, a
    VOC2012-style folder (see the module docstring)."""

    def __init__(self, *, root: str = "datasets/VOC2012", num_classes: int = 21,
                 class_names: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(root=root, num_classes=num_classes,
                         class_names=class_names or (VOC_CLASSES if num_classes == 21 else None), **kwargs)

    def items(self, split: str) -> list[tuple[Path, Path]]:
        where = "a VOC2012-style folder (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)"
        if not self.root.is_dir():
            raise DataError(f"VOC segmentation root not found: {self.root} (expected {where})")
        for sub in ("JPEGImages", "SegmentationClass"):
            _need(self.root / sub, f"VOC folder {sub}/ ({where})")
        ids_file = _need(self.root / "ImageSets" / "Segmentation" / f"{split}.txt",
                         f"VOC split list for '{split}'")
        ids = [line.split()[0] for line in ids_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise DataError(f"{ids_file} lists no images")
        out = []
        for i in ids:
            img = _need(self.root / "JPEGImages" / f"{i}.jpg", f"image of '{i}' listed in {ids_file.name}")
            mask = _need(self.root / "SegmentationClass" / f"{i}.png", f"mask of '{i}' listed in {ids_file.name}")
            out.append((img, mask))
        return out


class MaskFolderData(_DiskSegData):
    """``root/images/<split>/<stem>.{jpg,png}`` with ``root/masks/<split>/<stem>.png`` label
    maps; ``num_classes`` (background included) is given in the config."""

    def __init__(self, *, root: str = "datasets/masks", num_classes: int | None = None, **kwargs: Any) -> None:
        super().__init__(root=root, num_classes=num_classes, **kwargs)  # type: ignore[arg-type]

    def items(self, split: str) -> list[tuple[Path, Path]]:
        images_dir = _need(self.root / "images" / split, f"image folder for split '{split}' "
                           f"(expected {self.root}/images/{split}/ and {self.root}/masks/{split}/)")
        masks_dir = _need(self.root / "masks" / split, f"mask folder for split '{split}' "
                          f"(expected {self.root}/masks/{split}/<stem>.png beside images/{split}/)")
        images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        masks = {p.stem: p for p in sorted(masks_dir.iterdir()) if p.suffix.lower() == ".png"}
        if not images:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
        missing = sorted(set(images) - set(masks))
        if missing:
            raise DataError(f"{len(missing)} image(s) in {images_dir} have no mask {masks_dir}/<stem>.png, "
                            f"e.g. {missing[0]}")
        extra = sorted(set(masks) - set(images))
        if extra:
            raise DataError(f"{len(extra)} mask(s) in {masks_dir} have no image with the same stem, "
                            f"e.g. {extra[0]}.png")
        return [(images[s], masks[s]) for s in sorted(images)]
