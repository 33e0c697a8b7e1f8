"""Object detection data from local disk: COCO json, Pascal VOC xml and YOLO txt.

Every reader turns its format into the same :class:`Record` list, and
:class:`DetectionDataset` turns a record into torchvision's detection sample:

    image  (3, H, W) float in [0, 1], at the file's own size (models resize themselves
           and return boxes in these original pixels, so COCO/VOC scoring is exact)
    target {"boxes": (N, 4) float xyxy pixels, "labels": (N,) int64 in 1..K,
            "image_id": int, "area": (N,), "iscrowd": (N,) int64[, "difficult": (N,) bool]
            [, "masks": (N, H, W) uint8 instance masks (COCO with ``with_masks``)]}

Batches are ``DetectionBatch(list of images, list of targets)`` (:func:`collate_detection`); images
stay a list because real datasets mix sizes. Crowd regions and VOC ``difficult``
objects stay in the targets so the evaluator can ignore them; models drop
``iscrowd == 1`` boxes when they build training targets. Boxes that reach outside the
image are clipped and boxes that are then empty are dropped, with one warning per
split that counts both.
"""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule, class_meta
from zoo.data.images import IMAGE_SUFFIXES
from zoo.data.batches import DetectionBatch
from zoo.errors import DataError, choices

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")
_TARGET_FIELDS = ("labels", "iscrowd", "area", "difficult")  # per-box fields besides boxes


@dataclass
class Record:
    """One annotated image, boxes already in xyxy pixels of the file."""

    file: Path
    image_id: int
    width: int
    height: int
    boxes: np.ndarray                 # (N, 4) float32 xyxy
    labels: np.ndarray                # (N,) int64 in 1..K
    iscrowd: np.ndarray | None = None  # (N,) int64
    area: np.ndarray | None = None    # (N,) float32; box area when the format has none
    difficult: np.ndarray | None = None  # (N,) bool (VOC)
    segmentation: list | None = None  # (N,) COCO polygons / RLEs, as in the json (COCO)
    extra: dict[str, Any] = field(default_factory=dict)


def sanitize_records(records: list[Record], source: str) -> list[Record]:
    """Clip boxes to their image and drop those left with no width or height.

    Emits one warning for the whole list that counts clipped and dropped boxes."""
    clipped = dropped = 0
    for r in records:
        b = r.boxes.reshape(-1, 4).astype(np.float32)
        c = b.copy()
        c[:, 0::2] = c[:, 0::2].clip(0, r.width)
        c[:, 1::2] = c[:, 1::2].clip(0, r.height)
        keep = (c[:, 2] - c[:, 0] >= 1) & (c[:, 3] - c[:, 1] >= 1)
        clipped += int((np.abs(c - b).max(1, initial=0) > 1e-3)[keep].sum())
        dropped += int((~keep).sum())
        r.boxes = c[keep]
        r.labels = r.labels[keep]
        n = len(r.labels)
        r.iscrowd = (r.iscrowd[keep] if r.iscrowd is not None else np.zeros(n, np.int64))
        r.area = (r.area[keep] if r.area is not None else
                  ((r.boxes[:, 2] - r.boxes[:, 0]) * (r.boxes[:, 3] - r.boxes[:, 1])))
        if r.difficult is not None:
            r.difficult = r.difficult[keep]
        if r.segmentation is not None:
            r.segmentation = [seg for seg, k in zip(r.segmentation, keep) if k]
    if clipped or dropped:
        warnings.warn(f"{source}: clipped {clipped} boxes that reached outside their image and "
                      f"dropped {dropped} degenerate or out-of-image boxes", stacklevel=2)
    return records


# -- readers -------------------------------------------------------------------------------
def read_coco(ann_file: str | Path, image_dir: str | Path, cat_ids: Sequence[int] | None = None,
              with_masks: bool = False) -> tuple[list[Record], list[str], list[int]]:
    """Read a COCO ``instances_*.json``. Category ids (any integers, e.g. COCO's 1..90 with
    gaps) map to contiguous labels 1..K in increasing id order, or in the order of
    ``cat_ids`` when given (so train and val share one mapping). Returns
    ``(records, class_names, cat_ids)`` with ``cat_ids[label - 1]`` the original id.
    Each record keeps its annotations' ``segmentation`` fields (decoded to masks by
    :func:`decode_coco_masks`); ``with_masks`` requires one on every annotation."""
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    try:
        with open(ann_file) as f:
            coco = json.load(f)
        cats = {c["id"]: c["name"] for c in coco["categories"]}
        images = coco["images"]
        anns = coco.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"could not read COCO annotations {ann_file}: {e}; expected a json file "
                        f"with 'images', 'annotations' and 'categories'") from e
    ids = list(cat_ids) if cat_ids is not None else sorted(cats)
    label_of = {cid: i + 1 for i, cid in enumerate(ids)}
    per_image: dict[int, list[dict]] = {img["id"]: [] for img in images}
    for a in anns:
        if a["category_id"] not in label_of:
            raise DataError(f"{ann_file}: annotation {a.get('id')} has category_id "
                            f"{a['category_id']}, which is not among its categories")
        if with_masks and a.get("segmentation") is None:
            raise DataError(f"{ann_file}: annotation {a.get('id')} has no 'segmentation', and "
                            f"data.with_masks=true needs a mask for every object")
        per_image.setdefault(a["image_id"], []).append(a)
    records = []
    for img in images:
        rows = per_image[img["id"]]
        xywh = np.asarray([a["bbox"] for a in rows], dtype=np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
        records.append(Record(
            file=image_dir / img["file_name"], image_id=int(img["id"]),
            width=int(img["width"]), height=int(img["height"]), boxes=boxes,
            labels=np.asarray([label_of[a["category_id"]] for a in rows], dtype=np.int64),
            iscrowd=np.asarray([a.get("iscrowd", 0) for a in rows], dtype=np.int64),
            area=np.asarray([a.get("area", w * h) for a, (_, _, w, h) in zip(rows, xywh)],
                            dtype=np.float32),
            segmentation=[a.get("segmentation") for a in rows]))
    return sanitize_records(records, str(ann_file)), [cats[i] for i in ids], ids


def decode_coco_masks(segmentations: Sequence[Any], height: int, width: int,
                      source: str = "") -> np.ndarray:
    """COCO ``segmentation`` fields -> (N, H, W) uint8 binary masks, through pycocotools.

    Each field is a polygon list ``[[x0, y0, x1, y1, ...], ...]`` (the parts of one
    object, merged), an uncompressed RLE ``{"size": [H, W], "counts": [int, ...]}`` (as
    crowd regions are stored) or a compressed RLE (``counts`` a string)."""
    from pycocotools import mask as mask_utils

    out = np.zeros((len(segmentations), height, width), dtype=np.uint8)
    for j, seg in enumerate(segmentations):
        try:
            if isinstance(seg, list):
                polys = [p for p in seg if len(p) >= 6]  # three points or more
                if not polys:
                    continue
                rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
            elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
                rle = mask_utils.frPyObjects(seg, *seg["size"])
            elif isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes)):
                counts = seg["counts"]
                rle = {"size": seg["size"], "counts": counts.encode("ascii") if isinstance(counts, str)
                       else counts}
            else:
                raise TypeError("not a polygon list or an RLE")
            m = mask_utils.decode(rle)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise DataError(f"{source}: segmentation #{j} could not be decoded ({e}); COCO masks are "
                            f"polygon lists [[x, y, ...]] or RLEs {{size: [H, W], counts: ...}}") from e
        if m.shape[:2] != (height, width):
            raise DataError(f"{source}: segmentation #{j} is an RLE of size {list(m.shape[:2])} on "
                            f"an image of {height}x{width} pixels")
        out[j] = m
    return out


def read_voc(root: str | Path, split: str,
             class_names: Sequence[str] = VOC_CLASSES) -> list[Record]:
    """Read a VOC2007-style folder: ``ImageSets/Main/<split>.txt`` lists ids, each with
    ``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``. VOC's 1-based inclusive pixel
    corners become continuous coordinates ``(xmin - 1, ymin - 1, xmax, ymax)``."""
    root = Path(root)
    list_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not list_file.is_file():
        raise DataError(f"no {list_file}; a VOC root holds JPEGImages/, Annotations/ and "
                        f"ImageSets/Main/<split>.txt (e.g. datasets/VOC2007)")
    label_of = {n: i + 1 for i, n in enumerate(class_names)}
    ids = [ln.split()[0] for ln in list_file.read_text().splitlines() if ln.strip()]
    records = []
    for k, ident in enumerate(ids):
        xml_file = root / "Annotations" / f"{ident}.xml"
        try:
            tree = ET.parse(xml_file).getroot()
            size = tree.find("size")
            w, h = int(float(size.findtext("width"))), int(float(size.findtext("height")))
            boxes, labels, difficult = [], [], []
            for obj in tree.iter("object"):
                name = obj.findtext("name").strip()
                if name not in label_of:
                    raise DataError(f"{xml_file}: class '{name}' is not one of data.class_names "
                                    f"({choices(class_names)})")
                bb = obj.find("bndbox")
                x0, y0, x1, y1 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
                boxes.append([x0 - 1, y0 - 1, x1, y1])
                labels.append(label_of[name])
                difficult.append(int(obj.findtext("difficult") or 0) == 1)
        except DataError:
            raise
        except (OSError, ET.ParseError, AttributeError, TypeError, ValueError) as e:
            raise DataError(f"could not read VOC annotation {xml_file} ({e}); expected "
                            f"<size><width/><height/></size> and <object><name/><bndbox>"
                            f"<xmin/><ymin/><xmax/><ymax/></bndbox></object> entries") from e
        records.append(Record(
            file=root / "JPEGImages" / f"{ident}.jpg", image_id=k, width=w, height=h,
            boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.asarray(labels, dtype=np.int64),
            difficult=np.asarray(difficult, dtype=bool), extra={"name": ident}))
    return sanitize_records(records, f"{root} ({split})")


def read_yolo_names(data_yaml: str | Path) -> tuple[dict, list[str]]:
    """The parsed ``data.yaml`` and its class names (a list, or a ``{index: name}`` map)."""
    import yaml

    data_yaml = Path(data_yaml)
    if not data_yaml.is_file():
        raise DataError(f"no {data_yaml}; a YOLO dataset root holds data.yaml (train:, val: image "
                        f"folders relative to it, names: list) with labels/ beside images/")
    try:
        spec = yaml.safe_load(data_yaml.read_text()) or {}
        names = spec["names"]
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise DataError(f"could not read {data_yaml}: it needs a 'names:' list of class "
                        f"names ({e})") from e
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    return spec, [str(n) for n in names]


def read_yolo_txt(root: str | Path, split: str, data_yaml: str = "data.yaml") -> list[Record]:
    """Read a YOLO txt split: images in the folder ``data.yaml`` names for ``split``, each
    with ``labels/.../<stem>.txt`` beside ``images/`` holding ``class cx cy w h`` lines
    (0-based class, box normalised by the image size). A missing label file is an image
    without objects."""
    from PIL import Image

    root = Path(root)
    spec, names = read_yolo_names(root / data_yaml)
    if split not in spec:
        raise DataError(f"{root / data_yaml} has no '{split}:' entry; it names "
                        f"{choices(k for k in spec if k != 'names')}")
    base = root / spec.get("path", ".")
    folder = (base / spec[split]).resolve()
    if not folder.is_dir():
        raise DataError(f"the '{split}' image folder {folder} named in {root / data_yaml} does "
                        f"not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    records = []
    for k, img_file in enumerate(files):
        parts = list(img_file.parts)
        idx = len(parts) - 1 - parts[::-1].index("images") if "images" in parts else None
        if idx is None:
            raise DataError(f"{img_file} is not under an images/ folder; YOLO txt labels are "
                            f"found by replacing images/ with labels/")
        label_file = Path(*parts[:idx], "labels", *parts[idx + 1:]).with_suffix(".txt")
        try:
            with Image.open(img_file) as im:
                w, h = im.size
        except OSError as e:
            raise DataError(f"could not read image {img_file}: {e}") from e
        rows = np.zeros((0, 5), dtype=np.float64)
        if label_file.is_file():
            try:
                rows = np.loadtxt(label_file, ndmin=2, dtype=np.float64).reshape(-1, 5)
            except ValueError as e:
                raise DataError(f"{label_file}: each line must be 'class cx cy w h' with "
                                f"normalised coordinates ({e})") from e
        cls = rows[:, 0].astype(np.int64)
        if len(cls) and (cls.min() < 0 or cls.max() >= len(names)):
            raise DataError(f"{label_file}: class index {int(cls.max())} is outside 0..{len(names) - 1}"
                            f" of the names in {root / data_yaml}")
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
        records.append(Record(file=img_file, image_id=k, width=w, height=h, boxes=boxes,
                              labels=cls + 1))
    return sanitize_records(records, f"{folder}")


# -- transforms and dataset ----------------------------------------------------------------
class DetectionTransform:
    """Apply a transforms-v2 pipeline to ``(uint8 image, target)``: boxes travel as
    ``tv_tensors.BoundingBoxes`` and masks as ``tv_tensors.Mask``, so geometric
    transforms move them with the image; ``SanitizeBoundingBoxes`` at the end drops
    boxes cropped away together with every per-box field."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        from torchvision.transforms import v2

        self.pipeline = v2.Compose([*transforms, v2.ClampBoundingBoxes()])
        self.sanitize = v2.SanitizeBoundingBoxes(labels_getter=_per_box_fields)

    def __call__(self, image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        from torchvision import tv_tensors

        t = dict(target)
        t["boxes"] = tv_tensors.BoundingBoxes(t["boxes"], format="XYXY",
                                              canvas_size=tuple(image.shape[-2:]))
        for k in ("masks", "semantic"):
            if k in t:
                t[k] = tv_tensors.Mask(t[k])
        image, t = self.pipeline(tv_tensors.Image(image), t)
        # the (H, W) semantic map is a Mask so geometric transforms move it, but it is not
        # per box: SanitizeBoundingBoxes indexes every Mask by the kept boxes and would cut
        # its rows whenever an image has exactly H boxes
        semantic = t.pop("semantic", None)
        image, t = self.sanitize(image, t)
        if semantic is not None:
            t["semantic"] = semantic
        out = {k: (v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v)
               for k, v in t.items()}
        return image.as_subclass(torch.Tensor), out


def _per_box_fields(inputs: Any) -> tuple[torch.Tensor, ...]:
    target = inputs[1]
    return tuple(target[k] for k in _TARGET_FIELDS if k in target)


class _IoUCropIfBoxes:
    """SSD's random IoU crop, skipped for images without boxes (it needs some)."""

    def __init__(self) -> None:
        from torchvision.transforms import v2

        self.crop = v2.RandomIoUCrop()

    def __call__(self, image: Any, target: dict) -> Any:
        if len(target["boxes"]) == 0:
            return image, target
        return self.crop(image, target)


def build_detection_transforms(train: bool, *, hflip: float = 0.5, vflip: float = 0.0,
                               rot90: float = 0.0, color: float = 0.0, zoom_out: float = 0.0,
                               crop: bool = False, size: int | None = None,
                               scale_range: Sequence[float] | None = None
                               ) -> DetectionTransform | None:
    """Training augmentation (evaluation uses the images as they are): photometric
    distortion with probability ``color``, SSD's zoom out (probability ``zoom_out``, up
    to 4x, mean-colour fill) and IoU crop, scale jitter of the image to
    ``size * U(scale_range)`` on its longer side (none when either is None), horizontal
    and vertical flips and a quarter turn with probabilities ``hflip``, ``vflip``,
    ``rot90`` (all three at 0.5: the eight symmetries of a square, for data whose
    classes do not depend on orientation). Returns None when there is nothing to do."""
    from torchvision.transforms import v2

    if not train:
        return None
    ops: list[Callable] = []
    if color > 0:
        ops.append(v2.RandomPhotometricDistort(p=color))
    if zoom_out > 0:
        ops.append(v2.RandomZoomOut(fill=[124, 116, 104], side_range=(1.0, 4.0), p=zoom_out))
    if crop:
        ops.append(_IoUCropIfBoxes())
    if size is not None and scale_range is not None:
        ops.append(v2.ScaleJitter((int(size), int(size)), scale_range=tuple(scale_range or (1, 1)),
                                  antialias=True))
    if hflip > 0:
        ops.append(v2.RandomHorizontalFlip(hflip))
    if vflip > 0:
        ops.append(v2.RandomVerticalFlip(vflip))
    if rot90 > 0:  # a quarter turn (expand=True keeps non-square images whole)
        ops.append(v2.RandomApply([v2.RandomRotation((90, 90), expand=True)], p=rot90))
    return DetectionTransform(ops) if ops else None


def decode_image_file(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB; a missing or corrupt file is a :class:`DataError`."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as e:
        raise DataError(f"could not read image {path}: {e}") from e


class DetectionDataset(Dataset):
    """Images and targets from :class:`Record` s (see the module docstring for the form)."""

    def __init__(self, records: list[Record], transforms: Callable | None = None,
                 with_masks: bool = False) -> None:
        self.records = records
        self.transforms = transforms
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.records)

    def target(self, index: int) -> dict[str, Any]:
        r = self.records[index]
        t: dict[str, Any] = {
            "boxes": torch.from_numpy(r.boxes).reshape(-1, 4),
            "labels": torch.from_numpy(r.labels),
            "image_id": r.image_id,
            "area": torch.from_numpy(np.asarray(r.area, dtype=np.float32)),
            "iscrowd": torch.from_numpy(np.asarray(r.iscrowd, dtype=np.int64)),
        }
        if r.difficult is not None:
            t["difficult"] = torch.from_numpy(r.difficult)
        if self.with_masks:
            t["masks"] = torch.from_numpy(decode_coco_masks(r.segmentation or [], r.height, r.width,
                                                            str(r.file)))
        return t

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        r = self.records[index]
        image = decode_image_file(r.file)
        if tuple(image.shape[-2:]) != (r.height, r.width):
            raise DataError(f"{r.file} is {image.shape[-1]}x{image.shape[-2]} pixels but its "
                            f"annotation says {r.width}x{r.height}")
        target = self.target(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image.float() / 255, target

    def box_sizes(self, limit: int | None = None) -> torch.Tensor:
        """(M, 2) non-crowd box widths and heights as fractions of their image's size."""
        rows = []
        for r in self.records[:limit]:
            keep = r.iscrowd == 0
            wh = r.boxes[keep, 2:] - r.boxes[keep, :2]
            rows.append(wh / np.asarray([r.width, r.height], dtype=np.float32))
        return torch.from_numpy(np.concatenate(rows)) if rows else torch.zeros(0, 2)


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict]]) -> DetectionBatch:
    """``[(image, target), ...]`` -> ``DetectionBatch(list of images, list of targets)``."""
    images, targets = zip(*batch) if batch else ((), ())
    return DetectionBatch(list(images), list(targets))


# -- DataModules ---------------------------------------------------------------------------
class _DiskDetectionData(DataModule):
    """Shared part of the on-disk formats: split names, augmentation, the class metadata
    read from the files (:meth:`infer_meta`) and the check that every image a split lists
    exists, made when the split is built (the validation split when the data is built)."""

    has_masks = False  # whether the format stores instance masks (``with_masks``)

    def __init__(self, *, root: str, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, image_size: int = 416,
                 train_split: str = "train", val_split: str = "val", test_split: str | None = None,
                 hflip: float = 0.5, color: float = 0.5, zoom_out: float = 0.0, crop: bool = False,
                 scale_range: Sequence[float] | None = (0.75, 1.25), with_masks: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(root=root, num_classes=num_classes, class_names=class_names,
                         image_size=image_size, train_split=train_split, val_split=val_split,
                         test_split=test_split, hflip=hflip, color=color, zoom_out=zoom_out,
                         crop=crop, scale_range=list(scale_range) if scale_range else None,
                         with_masks=with_masks, **kwargs)
        if with_masks and not self.has_masks:
            raise DataError(f"data.with_masks=true, but {type(self).__name__} files hold boxes "
                            f"only; instance masks come from data=coco (polygons or RLEs) or "
                            f"data=shapes")
        self.with_masks = bool(with_masks)
        self.root = Path(root).expanduser()
        self.split_names = {"train": train_split, "val": val_split,
                            "test": test_split or val_split}
        self.collate_fn = collate_detection
        self.augment = dict(hflip=hflip, color=color, zoom_out=zoom_out, crop=crop,
                            size=image_size, scale_range=scale_range)

    @classmethod
    def class_names_on_disk(cls, config: dict[str, Any]) -> tuple[list[str], str]:
        """The dataset's class names in label order (label = index + 1) and the file
        they were read from."""
        raise NotImplementedError

    @classmethod
    def infer_meta(cls, config: dict[str, Any]) -> dict[str, Any]:
        names, where = cls.class_names_on_disk(config)
        return class_meta(names, where, config)

    def _fill_meta(self) -> None:
        """Class metadata from the files (when built outside a composed config), then a
        first look at the validation split so a missing image stops the run at start."""
        self.meta.update(type(self).infer_meta({**self.meta, "root": str(self.root)}))
        self.dataset("val")

    def records(self, split: str) -> list[Record]:
        raise NotImplementedError

    def build(self, split: str) -> DetectionDataset:
        records = self.records(split)
        missing = [r.file for r in records if not r.file.is_file()]
        if missing:
            raise DataError(f"{len(missing)} of the {len(records)} images of the "
                            f"{self.split_names[split]} split are missing, e.g. {missing[0]}")
        tf = build_detection_transforms(split == "train", **self.augment)
        return DetectionDataset(records, tf, with_masks=self.with_masks)


def _coco_categories(ann: Path) -> list[dict]:
    try:
        with open(ann) as f:
            cats = json.load(f)["categories"]
        cats = sorted(({"id": int(c["id"]), "name": str(c["name"])} for c in cats),
                      key=lambda c: c["id"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"could not read {ann} ({type(e).__name__}); data=coco expects data.root with "
            f"annotations/instances_{{train,val}}2017.json and train2017/, val2017/ image "
            f"folders (split names: data.train_split, data.val_split)") from e
    if not cats:
        raise DataError(f"{ann} lists no categories")
    return cats


class CocoData(_DiskDetectionData):
    """COCO json detection data in the 2017 layout: ``root/annotations/instances_<split>.json``
    and images in ``root/<split>/``. Class names and count come from the validation
    file's categories, in increasing id order; ``meta["label_to_cat_id"]`` maps labels
    1..K back to the json's category ids for results files."""

    ANN_FILE = "annotations/instances_{split}.json"
    has_masks = True

    def __init__(self, *, root: str = "datasets/coco", num_classes: int | None = None,
                 train_split: str = "train2017", val_split: str = "val2017",
                 ann_file: str = ANN_FILE, image_dir: str = "{split}", **kwargs: Any) -> None:
        super().__init__(root=root, num_classes=num_classes, train_split=train_split,
                         val_split=val_split, ann_file=ann_file, image_dir=image_dir, **kwargs)
        self.ann_file, self.image_dir = ann_file, image_dir
        # Categories come from the validation file (smaller than train2017's 450 MB) so the
        # class names are known before any split is built; train must agree.
        self.cat_ids = [c["id"] for c in _coco_categories(self._paths(self.split_names["val"])[0])]
        self.meta["label_to_cat_id"] = {i + 1: cid for i, cid in enumerate(self.cat_ids)}
        self._fill_meta()

    @classmethod
    def class_names_on_disk(cls, config: dict[str, Any]) -> tuple[list[str], str]:
        ann = (Path(config.get("root", "datasets/coco")).expanduser()
               / str(config.get("ann_file", cls.ANN_FILE)).format(
                   split=config.get("val_split", "val2017")))
        return [c["name"] for c in _coco_categories(ann)], str(ann)

    def _paths(self, split: str) -> tuple[Path, Path]:
        return (self.root / self.ann_file.format(split=split),
                self.root / self.image_dir.format(split=split))

    def records(self, split: str) -> list[Record]:
        ann, images = self._paths(self.split_names[split])
        if not ann.is_file():
            raise DataError(f"no {ann}; data=coco expects data.root with annotations/"
                            f"instances_<split>.json and <split>/ image folders")
        return read_coco(ann, images, cat_ids=self.cat_ids, with_masks=self.with_masks)[0]


class VocData(_DiskDetectionData):
    """Pascal VOC detection data from a ``VOC2007``-style folder (``JPEGImages/``,
    ``Annotations/``, ``ImageSets/Main/<split>.txt``); ``difficult`` flags kept.

    Without ``class_names`` the classes are read from every ``Annotations/*.xml``: the
    20 VOC classes in the devkit's order when every name found is one of them (a subset
    of VOC keeps VOC's label numbers), otherwise the sorted set of names found. Given
    ``class_names`` fix the labels' order; an object of another class is an error."""

    def __init__(self, *, root: str = "datasets/VOC2007", num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, **kwargs: Any) -> None:
        if isinstance(class_names, str):  # data.class_names=ant would be read as a, n, t
            raise DataError(f"data.class_names must be a list, e.g. 'data.class_names=[{class_names},...]', "
                            f"got the string '{class_names}'")
        super().__init__(root=root, num_classes=num_classes, class_names=class_names, **kwargs)
        self._fill_meta()

    @classmethod
    def infer_meta(cls, config: dict[str, Any]) -> dict[str, Any]:
        names = config.get("class_names")
        if names is None:
            return super().infer_meta(config)
        if isinstance(names, str):
            raise DataError(f"data.class_names must be a list, e.g. 'data.class_names=[{names},...]', "
                            f"got the string '{names}'")
        given = config.get("num_classes")
        if given is not None and given != len(names):
            raise DataError(f"data.class_names has {len(names)} classes but data.num_classes="
                            f"{given}; set data.num_classes={len(names)} or leave it unset")
        return {"num_classes": len(names), "class_names": list(names)}

    @classmethod
    def class_names_on_disk(cls, config: dict[str, Any]) -> tuple[list[str], str]:
        root = Path(config.get("root", "datasets/VOC2007")).expanduser()
        folder = root / "Annotations"
        if not folder.is_dir():
            raise DataError(f"no Annotations/ folder under {root}; data=voc expects "
                            f"data.root at a VOC2007-style folder with JPEGImages/, Annotations/ "
                            f"and ImageSets/Main/train.txt, val.txt")
        found: set[str] = set()
        for xml_file in sorted(folder.glob("*.xml")):
            try:
                found.update((o.findtext("name") or "").strip()
                             for o in ET.parse(xml_file).getroot().iter("object"))
            except (OSError, ET.ParseError) as e:
                raise DataError(f"could not read VOC annotation {xml_file} ({e})") from e
        found.discard("")
        if not found:
            raise DataError(f"no <object><name> in any {folder}/*.xml; set data.class_names")
        names = list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)
        return names, str(folder)

    def records(self, split: str) -> list[Record]:
        return read_voc(self.root, self.split_names[split], self.meta["class_names"])


class YoloTxtData(_DiskDetectionData):
    """YOLO txt detection data: ``root/data.yaml`` names the ``train:``/``val:`` image
    folders and the class ``names:``; labels live in ``labels/`` beside ``images/``."""

    def __init__(self, *, root: str = "datasets/yolo", num_classes: int | None = None,
                 data_yaml: str = "data.yaml", **kwargs: Any) -> None:
        super().__init__(root=root, num_classes=num_classes, data_yaml=data_yaml, **kwargs)
        self.data_yaml = data_yaml
        self._fill_meta()

    @classmethod
    def class_names_on_disk(cls, config: dict[str, Any]) -> tuple[list[str], str]:
        path = (Path(config.get("root", "datasets/yolo")).expanduser()
                / str(config.get("data_yaml", "data.yaml")))
        return read_yolo_names(path)[1], str(path)

    def records(self, split: str) -> list[Record]:
        return read_yolo_txt(self.root, self.split_names[split], self.data_yaml)
