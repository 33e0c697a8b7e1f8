"""The training DataLoader, with worker processes that keep ``resume=`` bit-exact.

With ``data.num_workers=0`` a sample's random augmentation draws from the main
process's generators, which the trainer seeds and saves in every checkpoint, so a
resumed run draws what an uninterrupted one draws. Worker processes have generators of
their own, seeded once per loader iterator, so what a sample draws would depend on
which worker loaded it, how many samples that worker loaded before, and where the
iterator started: a resumed run (or another worker count) would see other
augmentations. With ``num_workers > 0`` the sampler therefore yields keys
``(epoch, index)`` instead of indices, and a worker reseeds torch's, Python's and
NumPy's global generators from ``(seed, epoch, index)`` before it loads the sample.
What a sample draws is then a function of the run's seed, the epoch and the sample
alone: the same on resume, with any number of workers, with persistent workers (their
copy of the dataset never needs to learn the epoch) and whatever the prefetch depth.
The sampler's position (epoch, micro-batches consumed) is in every checkpoint.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.engine import distributed as D

_M64 = (1 << 64) - 1


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample of one epoch (splitmix64 over the three numbers):
    neighbouring samples and epochs get unrelated streams."""
    z = 0
    for v in (seed, epoch, index):
        z = (z + (int(v) & _M64) + 0x9E3779B97F4A7C15) & _M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        z ^= z >> 31
    return z >> 1


def seed_sample(seed: int, epoch: int, index: int) -> None:
    """Seed the global generators that augmentations draw from (torch's CPU generator,
    ``random``, ``numpy.random``) for one sample."""
    s = sample_seed(seed, epoch, index)
    torch.random.default_generator.manual_seed(s)
    random.seed(s)
    np.random.seed(s & 0xFFFFFFFF)


class SeededSamples(Dataset):
    """``dataset[index]`` loaded under generators seeded from ``(seed, epoch, index)``;
    indexed by the keys ``(epoch, index)`` of :class:`KeyedEpochSampler`."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        seed_sample(self.seed, epoch, index)
        return self.dataset[index]


class KeyedEpochSampler(D.EpochSampler):
    """``EpochSampler`` that yields ``(epoch, index)`` so a worker knows the epoch."""

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        return ((epoch, i) for i in self._indices()[self.start:])


def _worker_init(worker_id: int) -> None:
    # Workers share the cores with the training process: one intra-op thread each.
    torch.set_num_threads(1)


def train_loader(data: Any, dataset: Dataset, *, seed: int, device: torch.device
                 ) -> tuple[DataLoader, D.EpochSampler, int]:
    """The training loader, its sampler and the micro-batches of an epoch.

    ``data`` is the DataModule (batch size, collate function, ``num_workers``,
    ``persistent_workers``, ``prefetch_factor``, ``shuffle``).
    """
    n = len(dataset)  # type: ignore[arg-type]
    workers = int(data.num_workers)
    cls = KeyedEpochSampler if workers > 0 else D.EpochSampler
    sampler = cls(n, shuffle=bool(data.shuffle), seed=seed, rank=D.rank(), world=D.world_size())
    per_rank = len(sampler)
    bs = data.batch_size
    drop_last = per_rank > bs
    batches = per_rank // bs if drop_last else -(-per_rank // bs)
    # A separate generator: creating a loader iterator must not draw from the global RNG,
    # or a run resumed mid-epoch would diverge from one never stopped.
    gen = torch.Generator().manual_seed(seed)
    extra: dict[str, Any] = {}
    if workers > 0:
        # Persistent workers live across epochs (no re-fork and re-import per epoch).
        extra = {"persistent_workers": bool(data.persistent_workers), "worker_init_fn": _worker_init}
        if data.prefetch_factor is not None:
            extra["prefetch_factor"] = int(data.prefetch_factor)
        dataset = SeededSamples(dataset, seed)
    loader = DataLoader(dataset, batch_size=bs, sampler=sampler, num_workers=workers,
                        collate_fn=data.collate_fn, pin_memory=device.type == "cuda",
                        drop_last=drop_last, generator=gen, **extra)
    return loader, sampler, batches


def shutdown(loader: DataLoader | None) -> None:
    """Stop a loader's persistent workers now rather than at garbage collection."""
    it = getattr(loader, "_iterator", None) if loader is not None else None
    if it is not None:
        loader._iterator = None  # type: ignore[union-attr]
        shutdown_workers = getattr(it, "_shutdown_workers", None)
        if shutdown_workers is not None:
            shutdown_workers()
