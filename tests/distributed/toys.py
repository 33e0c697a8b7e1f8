"""Models for the multi-process tests and the driver every process of them runs.

``BlockRegressor`` is a residual MLP whose blocks sit in an ``nn.ModuleList`` (the
default ``fsdp_units()``); there is no dropout or batch statistic, so the gradient of a
batch split over processes equals the gradient of the whole batch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's zoo, under torchrun

import torch
from omegaconf import OmegaConf
from torch import nn

from zoo.models.base import ZooModel


class BlockRegressor(ZooModel):
    task = "regression"

    def __init__(self, features: int = 8, hidden: int = 16, blocks: int = 3, norm: bool = False) -> None:
        super().__init__()
        self.inp = nn.Linear(features, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), *([nn.BatchNorm1d(hidden)] if norm else []),
                          nn.Tanh()) for _ in range(blocks))
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.head(h).squeeze(-1)

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        x, y = batch
        return {"loss": ((self(x) - y) ** 2).mean()}

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self(batch[0])


def compose_cfg(config_dir: Path, overrides: list[str]) -> Any:
    from zoo.engine.config import compose

    cfg = compose(config_dir, "train", ["model=two_group", "logger=none", "trainer.progress=false",
                                        *overrides])
    del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg


def _full(t: torch.Tensor | None) -> torch.Tensor | None:
    from torch.distributed.tensor import DTensor

    if t is None:
        return None
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu().clone()


def run_job(config_dir: Path, run_dir: Path, overrides: list[str], norm: bool = False,
            resume: bool = False, device: str = "cpu") -> dict[str, Any]:
    """One training run through the zoo Trainer with ``BlockRegressor``; returns what
    the tests compare: the last step's gradients, the weights, the full optimizer state,
    and this rank's sample order for epochs 0-2 (or the one-line error)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    from zoo.engine import trainer as T
    from zoo.errors import UserError

    cfg = compose_cfg(config_dir, overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = T.Trainer(cfg, run_dir, torch.device(device), resume=resume)
    build, T.build_model = T.build_model, lambda c: BlockRegressor(features=int(c.data.features),
                                                                  norm=norm)
    try:
        summary = trainer.fit()
    except UserError as e:
        return {"error": str(e)}
    finally:
        T.build_model = build
    m = trainer.model
    optim = {k: get_optimizer_state_dict(m, o, options=StateDictOptions(full_state_dict=True))
             for k, o in trainer.optimizers.items()}
    epochs = {}
    for e in range(3):
        trainer.sampler.set_epoch(e)
        epochs[e] = [k[1] if isinstance(k, tuple) else k for k in trainer.sampler]
    return {"steps": summary["steps"],
            "grads": {n: _full(p.grad) for n, p in m.named_parameters()},
            "weights": {n: _full(p) for n, p in m.named_parameters()},
            "optim": optim, "epochs": epochs,
            "sharded": [type(p).__name__ for p in m.parameters()]}


def main() -> None:
    """torchrun ... toys.py CONFIG_DIR OUT JOBS_JSON [cuda]: every job in turn, each rank
    saving ``OUT/<job>.rank<r>.pt``."""
    import os

    from zoo.engine import distributed as D

    config_dir, out, jobs = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    device = "cpu"
    if len(sys.argv) > 4 and sys.argv[4] == "cuda":  # NCCL, one GPU per process
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    torch.set_num_threads(1)
    D.init(torch.device(device))
    for job in jobs:
        res = run_job(config_dir, out / job["name"], job["overrides"], norm=job.get("norm", False),
                      device=device)
        torch.save(res, out / f"{job['name']}.rank{D.rank()}.pt")
    D.barrier()
    D.cleanup()
    D.exit_worker(0)


if __name__ == "__main__":
    main()
