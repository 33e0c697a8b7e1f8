"""Small helpers shared by the trainer, evaluate.py and predict.py."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import UserError


def select_device(name: str | None = "auto") -> torch.device:
    """cuda, then mps, then cpu for ``auto``; otherwise the named device (checked)."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available; use trainer.device=cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"device '{name}' requested but MPS is not available; use trainer.device=cpu")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    """trainer.deterministic: deterministic kernels (warn only where none exists, e.g.
    roi_align backward on CUDA) and no cuDNN autotuning. Set both ways, so one process
    that trains twice does not keep the first run's setting."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(on), warn_only=True)
    torch.backends.cudnn.deterministic = bool(on)
    if on:
        torch.backends.cudnn.benchmark = False


def amp_dtype(setting: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for trainer.amp (auto: bf16 on CUDA when supported, off elsewhere)."""
    s = str(setting or "off").lower()
    if s in ("off", "false", "none", "no"):
        return None
    if s == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if s == "bf16":
        return torch.bfloat16
    if s == "fp16":
        return torch.float16
    raise UserError(f"unknown trainer.amp '{setting}'; valid choices: auto, off, bf16, fp16")


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor inside tuples/lists/dicts to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, dict):
        for v in batch.values():
            return batch_size_of(v)
    if isinstance(batch, (list, tuple)) and batch:
        first = batch[0]
        if isinstance(first, torch.Tensor) and isinstance(batch, list):
            return len(batch)  # a list of images
        return batch_size_of(first)
    return 1


def flat_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of an evaluator's output (nested tables left out)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            out[k] = float(v)
        elif isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v)
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _nan_to_none(o: Any) -> Any:
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    if isinstance(o, dict):
        return {k: _nan_to_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_nan_to_none(v) for v in o]
    return o


def write_json(path: str | Path, obj: Any) -> None:
    """JSON with NaN written as null (strict JSON), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_nan_to_none(json.loads(json.dumps(obj, default=_json_default))),
                              indent=2) + "\n")
    os.replace(tmp, path)


def format_table(metrics: dict[str, Any], title: str | None = None) -> str:
    nums = flat_numbers(metrics)
    if not nums:
        return ""
    w = max(len(k) for k in nums)
    lines = [title] if title else []
    lines += [f"  {k:<{w}}  {v:.6g}" for k, v in nums.items()]
    return "\n".join(lines)
