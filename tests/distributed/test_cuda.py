"""CUDA paths: the trainer on a GPU with bf16 autocast and channels_last, fused AdamW,
and the multi-process strategies over NCCL (DDP with SyncBatchNorm, FSDP2). They run
where a GPU exists (``pytest -m cuda``; ``benchmarks/gpu.py`` runs the multi-GPU ones)
and are skipped cleanly where none does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
HAS_CUDA = torch.cuda.is_available()
GPUS = torch.cuda.device_count() if HAS_CUDA else 0

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]
two_gpus = pytest.mark.skipif(GPUS < 2, reason="needs 2 CUDA devices (NCCL: one per process)")

BASE = ["trainer.progress=false", "logger=none", "trainer.device=cuda"]


def test_trainer_on_cuda_with_bf16_and_channels_last(train, tmp_path):
    run = tmp_path / "run"
    assert train("model=resnet18", *BASE, "trainer.amp=bf16", "trainer.channels_last=true",
                 "trainer.max_steps=6", "trainer.val_every_steps=6", "trainer.limit_val_batches=2",
                 f"hydra.run.dir={run}") == 0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # saved from the device, loaded on the CPU: plain CPU tensors in the file
    assert all(v.device.type == "cpu" for v in state["model"].values())
    assert "cuda" in state["rng"]


def test_trainer_setup_uses_fused_adamw_bf16_and_channels_last(config_dir, tmp_path):
    from omegaconf import OmegaConf

    from zoo.engine.config import compose
    from zoo.engine.trainer import Trainer
    from zoo.engine.utils import autocast

    cfg = compose(config_dir, "train", ["model=resnet18", *BASE, "trainer.channels_last=true",
                                        "trainer.max_steps=2"])
    del cfg["hydra"]
    OmegaConf.resolve(cfg)
    t = Trainer(cfg, tmp_path, torch.device("cuda"))
    t.setup()
    assert t.amp == torch.bfloat16  # amp=auto picks bf16 where the GPU has it
    opt = t.optimizers["main"]
    assert opt.defaults.get("fused") is True
    conv = next(m for m in t.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 8, 8, device="cuda").to(memory_format=torch.channels_last)
    with autocast(t.device, t.amp):
        assert t.model(x).dtype == torch.bfloat16


def test_resume_on_cuda_continues_exactly(train, tmp_path):
    common = ["model=logistic_regression", *BASE, "trainer.amp=off", "trainer.deterministic=true",
              "trainer.max_steps=12", "trainer.val_every_steps=6"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert train(*common, f"hydra.run.dir={full}") == 0
    assert train(*common, "trainer.interrupt_at=5", f"hydra.run.dir={part}") == 0
    assert train(f"resume={part}") == 0
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _launch(config_dir: Path, out: Path, jobs: list[dict]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "distributed" / "toys.py"), str(config_dir), str(out),
           json.dumps(jobs), "cuda"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {j["name"]: [torch.load(out / f"{j['name']}.rank{r}.pt", weights_only=False) for r in (0, 1)]
            for j in jobs}


@two_gpus
def test_ddp_fsdp_and_sync_batchnorm_over_nccl(config_dir, tmp_path):
    from tests.distributed.toys import run_job

    common = ["trainer.max_steps=10", "trainer.val_every_steps=5", "optim.lr=0.01",
              "trainer.amp=off", "data.batch_size=16"]
    res = _launch(config_dir, tmp_path, [
        {"name": "ddp", "overrides": common},
        {"name": "fsdp", "overrides": [*common, "trainer.strategy=fsdp"]},
        {"name": "syncbn", "norm": True, "overrides": [*common, "trainer.sync_batchnorm=true"]},
    ])
    one = run_job(config_dir, tmp_path / "one", [*common[:-1], "data.batch_size=32"], device="cuda")
    one_bn = run_job(config_dir, tmp_path / "one_bn", [*common[:-1], "data.batch_size=32"], norm=True,
                     device="cuda")
    tol = {"rtol": 1e-4, "atol": 1e-5}
    for name, ref in (("ddp", one), ("fsdp", one), ("syncbn", one_bn)):
        for r in res[name]:
            assert "error" not in r, r.get("error")
            assert all(torch.allclose(r["weights"][k], ref["weights"][k], **tol) for k in ref["weights"]), name
