"""The classic datasets: digits' fixed stratified split, the synthetic sets, and the
MNIST / CIFAR-10 / ImageFolder readers on tiny fixtures written in each format."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from zoo.data.digits import DigitsData
from zoo.data.tabular import MoonsData, RegressionData, XORData
from zoo.data.vision import CIFAR10Data, ImageFolderData, MNISTData, read_idx
from zoo.errors import DataError

# -- digits --------------------------------------------------------------------------------


def test_digits_split_is_fixed_stratified_and_disjoint():
    data = DigitsData()
    sets = {s: data.dataset(s) for s in ("train", "val", "test")}
    sizes = {s: len(d) for s, d in sets.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["val"] == sizes["test"] == 359 and sizes["train"] == 1079
    for s, d in sets.items():
        counts = torch.bincount(d.labels, minlength=10).float()
        share = counts / counts.sum()
        assert (share - 0.1).abs().max() < 0.01, s  # every class about 10% of every split
    x, y = sets["train"][0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(sets["train"].images.min()) and float(sets["train"].images.max()) <= 1
    again = DigitsData().dataset("test")
    assert torch.equal(again.images, sets["test"].images)  # the same split every time
    other_seed = DigitsData(seed=1).dataset("test")
    assert not torch.equal(other_seed.images, sets["test"].images)
    assert data.meta["class_names"] == [str(i) for i in range(10)]
    assert data.meta["num_features"] == 64


def test_digits_split_indices_partition_the_set():
    from zoo.data.digits import stratified_split

    labels = torch.arange(100) % 4
    parts = stratified_split(labels, (0.6, 0.2, 0.2), seed=3)
    allidx = torch.cat(list(parts.values())).sort().values
    assert torch.equal(allidx, torch.arange(100))
    assert [len(parts[s]) for s in ("train", "val", "test")] == [60, 20, 20]
    assert torch.bincount(labels[parts["val"]]).tolist() == [5, 5, 5, 5]


def test_digits_resize_and_augment():
    data = DigitsData(image_size=32, num_features=1024, augment_shift=2)
    x, _ = data.dataset("train")[0]
    assert x.shape == (1, 32, 32)
    torch.manual_seed(0)
    a = data.dataset("train")[5][0]
    b = data.dataset("train")[5][0]
    assert not torch.equal(a, b)  # random shifts in training ...
    assert torch.equal(data.dataset("val")[5][0], data.dataset("val")[5][0])  # ... never in eval


def test_digits_metadata_mistakes():
    # num_features always states the true flattened size (flat models check it)
    assert DigitsData(image_size=32, num_features=64).meta["num_features"] == 1024
    with pytest.raises(DataError, match="num_classes"):
        DigitsData(num_classes=5)
    with pytest.raises(DataError, match="val_fraction"):
        DigitsData(val_fraction=0.6, test_fraction=0.5)


# -- synthetic sets ----------------------------------------------------------------------

@pytest.mark.parametrize("cls", [RegressionData, XORData, MoonsData])
def test_synthetic_sets_are_deterministic_and_split(cls):
    a, b, c = cls(seed=0), cls(seed=0), cls(seed=1)
    for split, n in (("train", 600), ("val", 200), ("test", 200)):
        xa, ya = a.arrays(split)
        assert len(xa) == n and xa.dtype == torch.float32
        assert torch.equal(xa, b.arrays(split)[0]) and torch.equal(ya, b.arrays(split)[1])
    assert not torch.equal(a.arrays("train")[0], c.arrays("train")[0])
    x, _ = a.dataset("val")[0]
    assert x.shape == (a.meta["num_features"],)


def test_regression_targets_follow_the_true_weights():
    data = RegressionData(num_features=8, num_informative=2, noise=0.0, bias=1.5)
    w = torch.tensor(data.meta["true_weight"], dtype=torch.float64)
    assert (w[2:] == 0).all() and (w[:2].abs() >= 1).all()
    x, y = data.arrays("train")
    assert y.dtype == torch.float32
    torch.testing.assert_close(x.double() @ w + 1.5, y.double(), atol=1e-5, rtol=0)
    with pytest.raises(DataError, match="num_informative"):
        RegressionData(num_features=3, num_informative=5)


def test_xor_labels_are_the_xor_of_the_blob_signs():
    data = XORData(noise=0.1)
    x, y = data.arrays("train")
    assert torch.equal(((x[:, 0] > 0) ^ (x[:, 1] > 0)).long(), y)
    assert 0.4 < y.float().mean() < 0.6
    with pytest.raises(DataError, match="num_features"):
        XORData(num_features=3)


# -- MNIST -------------------------------------------------------------------------------

def write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def mnist_fixture(folder, n_train=30, n_test=10, compress=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28))
        labels = np.arange(n) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("sub,compress", [("", False), ("MNIST/raw", False), ("raw", True)])
def test_mnist_reads_idx_files(tmp_path, sub, compress):
    arrays = mnist_fixture(tmp_path / sub if sub else tmp_path, compress=compress)
    data = MNISTData(root=str(tmp_path), val_size=5)
    train, val, test = (data.dataset(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (25, 5, 10)
    x, y = test[3]
    assert x.shape == (1, 28, 28)
    np.testing.assert_allclose(x[0].numpy() * 255, arrays["t10k"][0][3], atol=1e-3)
    assert int(y) == 3
    # train and val are a partition of the official training set
    labels = torch.cat([train.labels, val.labels]).sort().values
    assert torch.equal(labels, torch.tensor(np.sort(arrays["train"][1])))


def test_mnist_reads_torchvision_processed_files(tmp_path):
    folder = tmp_path / "MNIST" / "processed"
    folder.mkdir(parents=True)
    for name, n in (("training.pt", 20), ("test.pt", 6)):
        torch.save((torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8), torch.arange(n) % 10),
                   folder / name)
    data = MNISTData(root=str(tmp_path), val_size=4)
    assert len(data.dataset("train")) == 16 and len(data.dataset("test")) == 6


def test_mnist_missing_or_corrupt_files(tmp_path):
    with pytest.raises(DataError, match=f"MNIST not found under {tmp_path}.*train-images-idx3-ubyte"):
        MNISTData(root=str(tmp_path))
    mnist_fixture(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)  # float type code: not MNIST
    with pytest.raises(DataError, match="magic"):
        read_idx(path)


# -- CIFAR-10 ----------------------------------------------------------------------------

def cifar_fixture(folder, n=6):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 b"labels": [i % 10 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return pickle.loads((folder / "test_batch").read_bytes())


def test_cifar10_reads_python_batches(tmp_path):
    test_batch = cifar_fixture(tmp_path / "cifar-10-batches-py")
    data = CIFAR10Data(root=str(tmp_path), val_size=5)
    assert data.meta["class_names"][:2] == ["airplane", "automobile"]
    assert (len(data.dataset("train")), len(data.dataset("val")), len(data.dataset("test"))) == (25, 5, 6)
    x, y = data.dataset("test")[2]
    assert x.shape == (3, 32, 32) and int(y) == 2
    # rows are 1024 red, then green, then blue values of a 32x32 image
    np.testing.assert_allclose(x.numpy().reshape(-1) * 255, test_batch[b"data"][2], atol=1e-3)


def test_cifar10_refuses_code_in_pickles_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        CIFAR10Data(root=str(tmp_path))
    folder = tmp_path / "cifar-10-batches-py"
    cifar_fixture(folder)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = pickle.loads((folder / "test_batch").read_bytes())
    bad[b"labels"][0] = 12
    (folder / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match="outside 0..9"):
        CIFAR10Data(root=str(tmp_path)).dataset("test")
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": Evil()}))
    with pytest.raises(DataError, match="refusing"):
        CIFAR10Data(root=str(tmp_path))


# -- ImageFolder -------------------------------------------------------------------------

def image_folder_fixture(root, classes=("cat", "dog"), splits=("train", "val"), n=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                array = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
                Image.fromarray(array).save(root / split / c / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_reads_classes_and_resizes(tmp_path):
    image_folder_fixture(tmp_path)
    data = ImageFolderData(root=str(tmp_path), image_size=16, num_classes=2, num_features=768)
    assert data.splits == ("train", "val")
    assert data.meta["class_names"] == ["cat", "dog"]
    train = data.dataset("train")
    assert len(train) == 6 and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    x, _ = train[0]
    assert x.shape == (3, 16, 16) and 0 <= x.min() and x.max() <= 1
    grey = ImageFolderData(root=str(tmp_path), image_size=8, channels=1, num_features=64,
                           num_classes=2)
    assert grey.dataset("val")[0][0].shape == (1, 8, 8)


def test_image_folder_mistakes(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}/train/<class>"):
        ImageFolderData(root=str(tmp_path))
    image_folder_fixture(tmp_path, classes=("a", "b", "c"), splits=("train", "val", "test"))
    with pytest.raises(DataError, match="has 3 classes but data.num_classes=2; set data.num_classes=3"):
        ImageFolderData(root=str(tmp_path), num_classes=2, num_features=3072)
    data = ImageFolderData(root=str(tmp_path), num_classes=3, num_features=3072)
    assert data.splits == ("train", "val", "test")
    (tmp_path / "val" / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra"):
        data.dataset("val")
    (tmp_path / "test" / "a" / "0.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot read image"):
        data.dataset("test")
