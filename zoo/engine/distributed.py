"""torchrun support: process group set-up, rank helpers, the two samplers, and the
two ways of spreading a model over processes (``trainer.strategy``).

``ddp`` (default): every process holds the whole model; DDP all-reduces gradients.
BatchNorm statistics stay per process unless ``trainer.sync_batchnorm`` converts the
layers to ``nn.SyncBatchNorm`` (CUDA only: torch's SyncBatchNorm has no CPU kernel).
``fsdp``: PyTorch's FSDP2 (``fully_shard``) shards weights, gradients and optimizer
state over the processes, one unit per block the model names in ``fsdp_units()`` plus
the rest of the model as the root unit; its checkpoints are sharded
(``zoo.engine.checkpoint.save_sharded``) and resume at another process count.

Training uses ``EpochSampler``: a seeded permutation per epoch, split over ranks, that
can start mid-epoch (exact resume). Evaluation uses ``ShardSampler``: contiguous,
unpadded shards in dataset order, so gathered evaluator states concatenate to the
single-process order and metrics do not depend on the number of processes.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any, Iterator, NoReturn

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device: torch.device) -> None:
    """Initialise the default process group when launched by torchrun (gloo on CPU, NCCL on CUDA)."""
    if env_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's value on every rank."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_flag(flag: bool) -> bool:
    """True on every rank if any rank says True (e.g. a non-finite loss, early stop)."""
    if not is_dist():
        return flag
    t = torch.tensor([1.0 if flag else 0.0],
                     device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_min(value: int | None) -> int | None:
    """The smallest value over all ranks (None where a rank has none; None if none has)."""
    if not is_dist():
        return value
    big = 2 ** 62
    t = torch.tensor([big if value is None else int(value)], dtype=torch.int64,
                     device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    v = int(t.item())
    return None if v == big else v


def all_reduce_flags(flags: list[bool]) -> list[bool]:
    """Each flag True on every rank if any rank says True (one collective for several)."""
    if not is_dist():
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags],
                     device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def env_rank() -> int:
    """This process's rank as torchrun set it (valid before and after the group exists)."""
    return int(os.environ.get("RANK", "0"))


def cleanup() -> None:
    """Destroy the process group (no barrier: a rank that failed must not wait for peers)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(code: int) -> NoReturn:
    """End a torchrun worker at once, once its files are written and its group destroyed.

    A DDP model keeps the gloo process group alive past ``destroy_process_group`` (its
    reducer holds it), so gloo's worker threads outlive ``main``. When one of them drops
    its last finished collective while the interpreter is shutting down, it needs the GIL
    that no longer exists and the process aborts ("terminate called without an active
    exception", SIGABRT), and torchrun reports a failed run that had in fact finished.
    Leaving through ``os._exit`` skips interpreter shutdown, so there is nothing to race.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


STRATEGIES = ("ddp", "fsdp")


def convert_sync_batchnorm(model: torch.nn.Module) -> int:
    """Replace every BatchNorm layer of ``model`` by ``nn.SyncBatchNorm`` in place (the
    same parameter and buffer objects, so optimizers stay valid and state-dict keys, hence
    checkpoints, do not change). Returns how many layers were converted."""
    bn = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    n = sum(isinstance(m, bn) for m in model.modules())
    if n and torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) is not model:
        raise ValueError("convert_sync_batchnorm: the model is a bare BatchNorm layer")
    return n


def fully_shard_model(root: torch.nn.Module, units: list[torch.nn.Module],
                      device: torch.device, mixed: torch.dtype | None = None) -> None:
    """FSDP2 over all ranks: each of ``units`` is one sharded unit (gathered just before
    its forward, freed after), then ``root`` (whose forward every step passes through)
    takes the parameters no unit holds. Parameters become DTensors in place, so
    optimizers must be built after this."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=mixed, reduce_dtype=torch.float32) \
        if mixed is not None else MixedPrecisionPolicy()
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(root, mesh=mesh, mp_policy=policy)


class EpochSampler(Sampler[int]):
    """Per-epoch seeded permutation (or identity), this rank's share, from ``start`` on.

    Every rank gets ``ceil(n / world)`` indices (the permutation is padded by wrapping,
    as DistributedSampler does) so all ranks take the same number of steps.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.shuffle, self.seed, self.rank, self.world = n, shuffle, seed, rank, world
        self.epoch = 0
        self.start = 0  # index into this rank's list where the next iteration starts

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        per_rank = -(-self.n // self.world)
        total = per_rank * self.world
        if total > len(idx):
            idx = idx + idx[: total - len(idx)]
        if self.world > 1 and not self.shuffle:
            # ordered data (e.g. LM streams): contiguous blocks keep each rank's order
            return idx[self.rank * per_rank:(self.rank + 1) * per_rank]
        return idx[self.rank:total:self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start:])

    def __len__(self) -> int:
        return max(-(-self.n // self.world) - self.start, 0)


class ShardSampler(Sampler[int]):
    """Contiguous, unpadded shard ``rank`` of ``range(n)`` in order."""

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        per = -(-n // world)
        self.lo, self.hi = min(rank * per, n), min((rank + 1) * per, n)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.lo, self.hi))

    def __len__(self) -> int:
        return self.hi - self.lo
