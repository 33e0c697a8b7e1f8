"""The validation/test loop shared by the trainer and evaluate.py."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.data import DataLoader

from zoo.engine import distributed as D
from zoo.engine.utils import autocast, to_device


def eval_loader(data: Any, split: str, device: torch.device) -> DataLoader:
    """Contiguous, unpadded shard of ``split`` for this process, in dataset order."""
    ds = data.dataset(split)
    return DataLoader(
        ds,
        batch_size=data.eval_batch_size,
        sampler=D.ShardSampler(len(ds), D.rank(), D.world_size()),
        num_workers=data.num_workers,
        collate_fn=data.collate_fn,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, evaluator: Any, device: torch.device,
             amp: torch.dtype | None = None, limit_batches: int | None = None,
             on_first_batch: Callable[[Any, Any], None] | None = None,
             progress: bool = False, desc: str = "eval",
             keep_predictions: list | None = None,
             predict: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Run ``model.predict`` over ``loader`` and return ``evaluator.compute()`` (same on every rank).

    ``keep_predictions``, if given, receives ``(predictions, batch)`` pairs moved to the CPU.
    ``predict`` replaces ``model.predict`` (a sharded model predicts through its FSDP root).
    """
    was_training = model.training
    model.eval()
    evaluator.reset()
    it = loader
    if progress and D.is_main():
        from tqdm.auto import tqdm

        it = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
    for i, batch in enumerate(it):
        if limit_batches is not None and i >= limit_batches:
            break
        batch = to_device(batch, device, non_blocking=device.type == "cuda")
        with autocast(device, amp):
            preds = model.predict(batch) if predict is None else predict(batch)
        preds = _float32(preds)
        evaluator.update(preds, batch)
        if i == 0 and on_first_batch is not None:
            on_first_batch(batch, preds)
        if keep_predictions is not None:
            keep_predictions.append((to_device(preds, torch.device("cpu")),
                                     to_device(batch, torch.device("cpu"))))
    evaluator.gather()
    metrics = evaluator.compute() if D.is_main() else None
    metrics = D.broadcast_object(metrics)
    model.train(was_training)
    return metrics


def _float32(x: Any) -> Any:
    """Predictions made under autocast come back in half precision; metrics want float32."""
    if isinstance(x, torch.Tensor):
        return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    if isinstance(x, dict):
        return {k: _float32(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_float32(v) for v in x)
    return x
