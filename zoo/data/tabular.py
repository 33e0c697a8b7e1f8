"""Small synthetic tabular sets generated from a seed: linear regression, XOR, two moons.

Each is drawn once, deterministically from ``seed``, and cut by a fixed permutation
into train/val/test (60/20/20 by default), so every run and every test sees the same
numbers. Items are ``(features (F,) float32, target)``: a float32 value for
regression, an int64 class for classification.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from zoo.data.base import DataModule
from zoo.data.batches import collate_labelled
from zoo.errors import DataError


class SyntheticTabularData(DataModule):
    """Base: subclasses implement ``generate(rng) -> (X (N, F), y (N,))`` as numpy arrays."""

    collate_fn = staticmethod(collate_labelled)  # batches are LabelledBatch(inputs, labels)

    def __init__(self, *, num_samples: int = 1000, seed: int = 0, val_fraction: float = 0.2,
                 test_fraction: float = 0.2, **kwargs: Any) -> None:
        super().__init__(num_samples=num_samples, seed=seed, val_fraction=val_fraction,
                         test_fraction=test_fraction, **kwargs)
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1
                and val_fraction + test_fraction < 1):
            raise DataError(f"data.val_fraction={val_fraction} and data.test_fraction="
                            f"{test_fraction} must be in [0, 1) and sum to less than 1")
        if int(num_samples) < 3:
            raise DataError(f"data.num_samples={num_samples} must be at least 3")
        self._arrays: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _fixed(self, key: str, value: int) -> None:
        """Record metadata the generator fixes, refusing a config that says otherwise."""
        given = self.meta.get(key)
        if given is not None and int(given) != value:
            raise DataError(f"data.{key}={given} but {type(self).__name__} always has "
                            f"{value}; set data.{key}={value}")
        self.meta[key] = value

    def arrays(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(X, y) tensors of one split."""
        if self._arrays is None:
            rng = np.random.default_rng(int(self.meta["seed"]))
            x, y = self.generate(rng)
            n = len(x)
            perm = rng.permutation(n)
            n_test = round(self.meta["test_fraction"] * n)
            n_val = round(self.meta["val_fraction"] * n)
            cut = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val],
                   "train": perm[n_test + n_val:]}
            x_t = torch.as_tensor(x, dtype=torch.float32)
            y_t = torch.as_tensor(y)
            self._arrays = {k: (x_t[np.sort(v)], y_t[np.sort(v)]) for k, v in cut.items()}
        return self._arrays[split]

    def build(self, split: str) -> Dataset:
        return TensorDataset(*self.arrays(split))


class RegressionData(SyntheticTabularData):
    """y = X w + bias + noise with standard normal features, of which only
    ``num_informative`` have a non-zero weight (the rest are for lasso to discard).

    The true weights are in ``meta["true_weight"]`` and ``meta["true_bias"]``.
    """

    def __init__(self, *, num_features: int = 10, num_informative: int = 3, noise: float = 0.1,
                 bias: float = 0.5, **kwargs: Any) -> None:
        super().__init__(num_features=num_features, num_informative=num_informative,
                         noise=noise, bias=bias, **kwargs)
        if not 0 <= int(num_informative) <= int(num_features):
            raise DataError(f"data.num_informative={num_informative} must be between 0 and "
                            f"data.num_features={num_features}")
        rng = np.random.default_rng(int(self.meta["seed"]) + 1)
        w = np.zeros(int(num_features))
        # Informative weights of magnitude 1..3 with random signs: clearly non-zero.
        w[: int(num_informative)] = rng.uniform(1, 3, int(num_informative)) * rng.choice(
            [-1.0, 1.0], int(num_informative))
        self.meta["true_weight"] = w.tolist()
        self.meta["true_bias"] = float(bias)

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n, f = int(self.meta["num_samples"]), int(self.meta["num_features"])
        x = rng.standard_normal((n, f))
        y = x @ np.asarray(self.meta["true_weight"]) + self.meta["true_bias"]
        y = y + self.meta["noise"] * rng.standard_normal(n)
        return x, y.astype(np.float32)


class XORData(SyntheticTabularData):
    """The XOR problem: four Gaussian blobs at (+-1, +-1); the class is 1 where the
    coordinates' signs differ. No line separates it (Minsky & Papert, 1969), so
    logistic regression stays at chance while a one-hidden-layer MLP solves it."""

    def __init__(self, *, noise: float = 0.3, **kwargs: Any) -> None:
        super().__init__(noise=noise, **kwargs)
        self._fixed("num_classes", 2)
        self._fixed("num_features", 2)
        self.meta["class_names"] = ["0", "1"]

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = int(self.meta["num_samples"])
        corners = rng.integers(0, 2, size=(n, 2))  # (N, 2) bits
        x = (2.0 * corners - 1.0) + self.meta["noise"] * rng.standard_normal((n, 2))
        y = corners[:, 0] ^ corners[:, 1]
        return x, y.astype(np.int64)


class MoonsData(SyntheticTabularData):
    """Two interleaving half circles (scikit-learn's ``make_moons``): non-linear but
    nearly separable, a gentler step than XOR."""

    def __init__(self, *, noise: float = 0.2, **kwargs: Any) -> None:
        super().__init__(noise=noise, **kwargs)
        self._fixed("num_classes", 2)
        self._fixed("num_features", 2)
        self.meta["class_names"] = ["0", "1"]

    def generate(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import make_moons

        x, y = make_moons(int(self.meta["num_samples"]), noise=float(self.meta["noise"]),
                          random_state=int(rng.integers(2**31)))
        return x, y.astype(np.int64)
