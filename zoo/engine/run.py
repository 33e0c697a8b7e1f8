"""Rebuilding a run from its directory (for evaluate.py, predict.py and resume)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from zoo.engine import checkpoint as C
from zoo.engine.config import check_run_config
from zoo.errors import UserError


def run_dir_of(run: str | None, ckpt: str | None) -> Path:
    if run:
        d = Path(run)
        if not d.is_dir():
            raise UserError(f"run directory does not exist: {d}")
        return d
    if ckpt:
        p = Path(ckpt)
        if not p.is_file():
            raise UserError(f"checkpoint not found: {p}")
        # <run>/checkpoints/<name>.pt
        return p.resolve().parent.parent
    raise UserError("give run=DIR (a training run directory) or ckpt=PATH")


def load_run_config(run_dir: Path) -> DictConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml errors
        raise UserError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    for key in ("model", "data"):
        if key not in cfg:
            raise UserError(f"{path} has no '{key}' section; is it a zoo run config?")
    check_run_config(cfg, where=str(path))
    return cfg


def checkpoint_path(run_dir: Path, ckpt: str | None) -> Path:
    if ckpt:
        return Path(ckpt)
    best = Path(run_dir) / "checkpoints" / "best.pt"
    if best.is_file():
        return best
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if last.is_file():
        return last
    raise UserError(f"no checkpoint in {Path(run_dir) / 'checkpoints'} (expected best.pt or last.pt)")


def load_model_weights(model: torch.nn.Module, path: Path) -> dict[str, Any]:
    ckpt = C.load(path)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise UserError(f"checkpoint {path} does not fit the run's model: "
                        f"{str(e).splitlines()[0]}") from None
    return ckpt


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: DictConfig
    data: Any
    model: torch.nn.Module
    device: torch.device
    ckpt_path: Path
    ckpt: dict[str, Any]


def load_run(run: str | None, ckpt: str | None, device: str = "auto",
             eval_batch_size: int | None = None) -> LoadedRun:
    """Rebuild data and model from a run directory and load its best (or the chosen) checkpoint."""
    from zoo.engine.config import build
    from zoo.engine.utils import select_device

    run_dir = run_dir_of(run, ckpt)
    cfg = load_run_config(run_dir)
    dev = select_device(device)
    if eval_batch_size:
        cfg.data.eval_batch_size = int(eval_batch_size)
    data = build(cfg.data, "data")
    model = build(cfg.model, "model").to(dev)
    path = checkpoint_path(run_dir, ckpt)
    state = load_model_weights(model, path)
    return LoadedRun(run_dir, cfg, data, model, dev, path, state)
