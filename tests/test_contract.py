"""Every model config in configs/model/ honours the model contract, through the real
train.py entry: trains a few steps (trainer=debug) with finite losses, writes its run
directory, round-trips its checkpoint to identical outputs, and predicts in the standard
form of the task it declares (checked by that task). A new model config is tested here
without a new test."""

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
from zoo.tasks import task_of

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted(p.stem for p in (ROOT / "zoo" / "configs" / "model").glob("*.yaml"))


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
    task = task_of(model)
    task.check_output(out1, batch)  # raises ModelOutputError naming what is wrong

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
    ev = task.build_evaluator(model, data.meta, cfg.get("evaluator"))
    ev.update(out1, batch)
    assert any(isinstance(v, (int, float)) for v in ev.compute().values())
    pictures = task.images(batch, out1, data.meta)
    for key, image in pictures.items():
        assert image.ndim == 3 and image.shape[0] == 3, key
        assert 0 <= float(image.min()) and float(image.max()) <= 1, key
