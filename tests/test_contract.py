"""Every model config in configs/model/ honours the model contract, through the real
train.py entry: trains a few steps (trainer=debug) with finite losses, writes its run
directory, round-trips its checkpoint to identical outputs, and predicts in its task's
form. A new model config is tested here without a new test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from zoo.engine import checkpoint as C
from zoo.engine.config import build
from zoo.engine.evaluation import eval_loader
from zoo.engine.run import load_run_config
from zoo.engine.utils import to_device

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))


def _finite(x) -> bool:
    if isinstance(x, torch.Tensor):
        return bool(torch.isfinite(x.float()).all()) if x.is_floating_point() else True
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(_finite(v) for v in x)
    return True


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def _check_form(preds, batch) -> None:
    """The task's standard output form: per-sample tensors or per-image detection dicts."""
    if isinstance(preds, torch.Tensor):
        assert preds.ndim >= 1 and preds.shape[0] >= 1
        return
    assert isinstance(preds, (list, tuple)) and len(preds) >= 1, type(preds)
    first = preds[0]
    if isinstance(first, dict) and "boxes" in first:
        for p in preds:
            assert p["boxes"].ndim == 2 and p["boxes"].shape[1] == 4
            assert p["scores"].shape[0] == p["boxes"].shape[0] == p["labels"].shape[0]
            assert p["labels"].dtype == torch.int64


@pytest.mark.parametrize("name", MODELS)
def test_model_contract(name, train, tmp_path):
    run = tmp_path / name
    torch.manual_seed(0)
    assert train(f"model={name}", "trainer=debug", f"hydra.run.dir={run}") == 0
    for f in ("config.yaml", "metrics.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] >= 1 or metrics["steps"] == 0 and metrics["best_value"] is not None

    # Rebuild from the run directory alone, as evaluate.py does.
    cfg = load_run_config(run)
    data = build(cfg.data, "data")
    model = build(cfg.model, "model")
    state = C.load(run / "checkpoints" / "best.pt")
    model.load_state_dict(state["model"])
    model.eval()
    batch = next(iter(eval_loader(data, "val", torch.device("cpu"))))
    batch = to_device(batch, torch.device("cpu"))
    with torch.no_grad():
        torch.manual_seed(1)
        out1 = model.predict(batch)
    assert _finite(out1)
    _check_form(out1, batch)

    # Checkpoint round trip: save, load into a fresh model, identical outputs.
    path = tmp_path / "roundtrip.pt"
    C.save_atomic({"model": model.state_dict()}, path)
    fresh = build(cfg.model, "model")
    fresh.load_state_dict(C.load(path)["model"])
    fresh.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        out2 = fresh.predict(batch)
    assert _equal(out1, out2)

    # The evaluator accepts the predictions and reports numbers.
    ev = model.build_evaluator(data.meta)
    ev.update(out1, batch)
    assert any(isinstance(v, (int, float)) for v in ev.compute().values())
