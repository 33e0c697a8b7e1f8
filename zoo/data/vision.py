"""Image classification datasets read from local disk: MNIST, CIFAR-10 and ImageFolder.

Nothing is ever downloaded. Each reader looks under ``data.root`` for the dataset's
standard layout and raises ``DataError`` naming the folder it searched and the layout
it expects when the files are absent or unreadable. Images are held in memory as
uint8 (N, C, H, W) tensors and converted, resized and augmented one at a time.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule, class_meta
from zoo.data.batches import collate_labelled
from zoo.data.images import IMAGE_SUFFIXES
from zoo.data.transforms import classification_augment, resize, to_float_image
from zoo.errors import DataError


class ImageTensorDataset(Dataset):
    """(image, label) pairs from in-memory tensors; images (N, C, H, W) uint8 or float.

    Items are float (C, image_size, image_size) images in [0, 1] and int64 labels.
    ``shift`` (pixels) and ``hflip`` are training augmentations
    (:func:`~zoo.data.transforms.classification_augment`).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, image_size: int | None = None,
                 shift: int = 0, hflip: bool = False) -> None:
        self.images = images
        self.labels = labels.long()
        self.image_size = image_size
        self.shift = int(shift)
        self.hflip = bool(hflip)
        size = (image_size, image_size) if image_size is not None else tuple(images.shape[-2:])
        self.augment = classification_augment(size, self.shift, self.hflip)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = to_float_image(self.images[i])
        if self.image_size is not None:
            image = resize(image, self.image_size)
        if self.augment is not None:
            image = self.augment(image)
        return image, self.labels[i]


class ImageClassificationData(DataModule):
    """Shared checks for in-memory image classification data.

    Subclasses call ``_check_meta`` with what they found on disk, and ``_dataset``
    to wrap a split's tensors with the resize and (training only) augmentation
    chosen by the config keys ``image_size``, ``augment_shift`` and ``augment_hflip``.
    """

    @classmethod
    def infer_meta(cls, config: dict[str, Any]) -> dict[str, Any]:
        """``num_features = channels * image_size^2`` (what flat models read), computed."""
        channels, size = config.get("channels"), config.get("image_size")
        if channels is None or size is None:
            return {}
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                   for v in (channels, size)):
            raise DataError(f"data.channels={channels} and data.image_size={size} must be "
                            f"positive integers")
        n = channels * size ** 2
        given = config.get("num_features")
        if given is not None and given != n:
            raise DataError(f"data.num_features={given} but data.channels * data.image_size^2 "
                            f"= {channels} * {size}^2 = {n}; leave data.num_features unset "
                            f"(it is computed)")
        return {"num_features": n}

    collate_fn = staticmethod(collate_labelled)  # batches are LabelledBatch(inputs, labels)

    def _check_meta(self, num_classes: int, channels: int, where: str) -> None:
        for key, found in (("num_classes", num_classes), ("channels", channels)):
            want = self.meta.get(key)
            if want is not None and int(want) != found:
                what = "classes" if key == "num_classes" else "channels"
                raise DataError(f"data.{key}={want} but {where} has {found} {what}; "
                                f"set data.{key}={found}")
        self.meta["num_classes"] = num_classes
        self.meta["channels"] = channels
        size = self.meta.get("image_size")
        if size is None or int(size) < 1:
            raise DataError(f"data.image_size={size} must be a positive number of pixels")
        # Flat models (logistic regression, MLP) size their input from the config's
        # num_features and compare it with this true value when training starts.
        self.meta["num_features"] = channels * int(size) ** 2

    def _dataset(self, split: str, images: torch.Tensor, labels: torch.Tensor) -> ImageTensorDataset:
        n = int(self.meta["num_classes"])
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= n):
            raise DataError(f"{type(self).__name__} {split} labels range over "
                            f"{int(labels.min())}..{int(labels.max())}, outside 0..{n - 1}; "
                            f"the files under {self.meta.get('root', 'the data')} are not this dataset")
        train = split == "train"
        return ImageTensorDataset(
            images, labels, image_size=self.meta.get("image_size"),
            shift=int(self.meta.get("augment_shift", 0)) if train else 0,
            hflip=bool(self.meta.get("augment_hflip", False)) and train,
        )


def _official_splits(data: ImageClassificationData, split: str, read: Any) -> Dataset:
    """test: the official test set; train/val: the official training set less a seeded
    hold-out of ``val_size`` images (MNIST, CIFAR-10)."""
    images, labels = read(data.meta["root"], "test" if split == "test" else "train")
    if split != "test":
        train_idx, val_idx = _split_train_val(len(labels), int(data.meta["val_size"]),
                                              int(data.meta["seed"]))
        idx = train_idx if split == "train" else val_idx
        images, labels = images[idx], labels[idx]
    return data._dataset(split, images, labels)


def _split_train_val(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random (train, val) partition of range(n): the official sets have no val split."""
    if not 0 < val_size < n:
        raise DataError(f"data.val_size={val_size} must be between 1 and {n - 1}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


# -- MNIST -------------------------------------------------------------------------------

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MNIST_LAYOUT = ("the IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                 "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz) in ROOT, "
                 "ROOT/raw or ROOT/MNIST/raw, or torchvision's ROOT/MNIST/processed/"
                 "{training,test}.pt")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format: big-endian magic, dims, then raw values)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    except (OSError, struct.error, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if zero != 0 or dtype_code != 0x08:  # 0x08 = unsigned byte, the only type MNIST uses
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values, "
                        f"found {data.size}")
    return data.reshape(dims)


def _find_mnist(root: Path) -> tuple[str, Path]:
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for suffix in ("", ".gz"):
            if all((folder / (name + suffix)).is_file() for pair in _MNIST_FILES.values()
                   for name in pair):
                return "idx" + suffix, folder
    for folder in (root / "MNIST" / "processed", root / "processed"):
        if (folder / "training.pt").is_file() and (folder / "test.pt").is_file():
            return "pt", folder
    raise DataError(f"MNIST not found under {root}; expected "
                    f"{_MNIST_LAYOUT.replace('ROOT', str(root))}")


def read_mnist(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``train`` (60,000) or ``test`` (10,000) set: (N, 1, 28, 28) uint8, (N,)."""
    kind, folder = _find_mnist(Path(root))
    if kind == "pt":
        path = folder / ("training.pt" if split == "train" else "test.pt")
        try:
            images, labels = torch.load(path, weights_only=True)
        except Exception as e:
            raise DataError(f"cannot read {path}: expected torchvision's (images, labels) "
                            f"tensors ({e})") from e
    else:
        suffix = ".gz" if kind == "idx.gz" else ""
        image_name, label_name = _MNIST_FILES[split]
        images = torch.from_numpy(read_idx(folder / (image_name + suffix)).copy())
        labels = torch.from_numpy(read_idx(folder / (label_name + suffix)).astype(np.int64))
    if images.ndim != 3 or len(images) != len(labels):
        raise DataError(f"MNIST {split} files in {folder} do not hold (N, 28, 28) images "
                        f"with N labels")
    return images[:, None].to(torch.uint8), labels.long()


class MNISTData(ImageClassificationData):
    """MNIST (LeCun et al., 1998) from local files; the validation split is ``val_size``
    images held out of the official training set with a fixed seed."""

    def __init__(self, *, root: str = "datasets/mnist", image_size: int = 28, val_size: int = 5000,
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(root=root, image_size=image_size, val_size=val_size, seed=seed, **kwargs)
        _find_mnist(Path(root))  # fail at start-up, not at the first validation
        self.meta["class_names"] = [str(i) for i in range(10)]
        self._check_meta(10, 1, f"MNIST ({root})")

    def build(self, split: str) -> Dataset:
        return _official_splits(self, split, read_mnist)


# -- CIFAR-10 ----------------------------------------------------------------------------

_CIFAR_LAYOUT = ("the python batches data_batch_1..5, test_batch and batches.meta in "
                 "ROOT/cifar-10-batches-py (or ROOT itself)")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a data file must not run code."""

    _allowed: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_cifar_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {e}") from e


_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def _find_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir():
        folder = root
    missing = [n for n in (*_CIFAR_TRAIN, "test_batch", "batches.meta")
               if not (folder / n).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 not found under {root} (missing {', '.join(missing)}); "
                        f"expected {_CIFAR_LAYOUT.replace('ROOT', str(root))}")
    return folder


def cifar10_class_names(root: str | Path) -> list[str]:
    """The ten label names stored in ``batches.meta``."""
    meta = _load_cifar_batch(_find_cifar10(Path(root)) / "batches.meta")
    return [s.decode() if isinstance(s, bytes) else str(s) for s in meta.get(b"label_names", [])]


def read_cifar10(root: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The official train (50,000) or test (10,000) set: (N, 3, 32, 32) uint8 and (N,) labels."""
    folder = _find_cifar10(Path(root))
    names = _CIFAR_TRAIN if split == "train" else ("test_batch",)
    images, labels = [], []
    for n in names:
        batch = _load_cifar_batch(folder / n)
        try:
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except (KeyError, ValueError) as e:
            raise DataError(f"{folder / n} is not a CIFAR-10 python batch (needs 'data' of "
                            f"N x 3072 bytes and 'labels')") from e
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


class CIFAR10Data(ImageClassificationData):
    """CIFAR-10 (Krizhevsky, 2009) from the python-pickle batches; ``val_size`` training
    images are held out with a fixed seed for validation."""

    def __init__(self, *, root: str = "datasets/cifar10", image_size: int = 32,
                 val_size: int = 5000, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(root=root, image_size=image_size, val_size=val_size, seed=seed, **kwargs)
        self.meta["class_names"] = cifar10_class_names(root) or [str(i) for i in range(10)]
        self._check_meta(10, 3, f"CIFAR-10 ({root})")

    def build(self, split: str) -> Dataset:
        return _official_splits(self, split, read_cifar10)


# -- ImageFolder -------------------------------------------------------------------------

_FOLDER_LAYOUT = ("ROOT/train/<class>/*.jpg|png and ROOT/val/<class>/*.jpg|png "
                  "(ROOT/test/<class>/ optional), one folder per class")


def list_image_folder(split_dir: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    """Sorted class folder names and (file, class) pairs of one split folder."""
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    files = [(f, c) for c in classes for f in sorted((split_dir / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    return classes, files


def load_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """One image file -> (channels, size, size) uint8, converted to grey or RGB as asked."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            array = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read image {path}: {e}") from e
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


class ImageFolderData(ImageClassificationData):
    """Images sorted into one folder per class (torchvision's ImageFolder layout), resized
    to ``image_size`` when read; classes are the sorted folder names of ``train``, read
    before the model is built (:meth:`infer_meta`). Every split's folders are checked
    when the data is built: class folders unknown to train, or a split without images."""

    def __init__(self, *, root: str = "datasets/image_folder", image_size: int = 32,
                 channels: int = 3, **kwargs: Any) -> None:
        super().__init__(root=root, image_size=image_size, channels=channels, **kwargs)
        root_path = Path(root)
        if int(channels) not in (1, 3):
            raise DataError(f"data.channels={channels} must be 1 (grey) or 3 (RGB)")
        self.splits = ("train", "val", "test") if (root_path / "test").is_dir() else ("train", "val")
        self.meta.update(self.infer_meta({**self.meta, "root": root}))
        classes = self.meta["class_names"]
        self._check_meta(len(classes), int(channels), f"{root_path / 'train'}")
        for split in self.splits:  # every split's folders checked now, not at the first validation
            self._list_split(split)

    @classmethod
    def infer_meta(cls, config: dict[str, Any]) -> dict[str, Any]:
        meta = super().infer_meta(config)
        root_path = Path(config.get("root", "datasets/image_folder"))
        if not (root_path / "train").is_dir() or not (root_path / "val").is_dir():
            raise DataError(f"no image folders found under {root_path}; expected "
                            f"{_FOLDER_LAYOUT.replace('ROOT', str(root_path))}")
        classes, _ = list_image_folder(root_path / "train")
        if not classes:
            raise DataError(f"{root_path / 'train'} has no class folders; expected {_FOLDER_LAYOUT}")
        return {**meta, **class_meta(classes, str(root_path / 'train'), config)}

    def _list_split(self, split: str) -> list[tuple[Path, str]]:
        split_dir = Path(self.meta["root"]) / split
        found, files = list_image_folder(split_dir)
        unknown = sorted(set(found) - set(self.meta["class_names"]))
        if unknown:
            raise DataError(f"{split_dir} has class folders not in train: {', '.join(unknown)}")
        if not files:
            raise DataError(f"{split_dir} holds no images; expected {_FOLDER_LAYOUT}")
        return files

    def build(self, split: str) -> Dataset:
        files = self._list_split(split)
        index = {c: i for i, c in enumerate(self.meta["class_names"])}
        size, channels = int(self.meta["image_size"]), int(self.meta["channels"])
        images = torch.stack([load_image(f, channels, size) for f, _ in files])
        labels = torch.tensor([index[c] for _, c in files], dtype=torch.int64)
        return self._dataset(split, images, labels)
