"""Checkpoints: full training state as state dicts and plain values, written atomically,
read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import CheckpointError

FORMAT_VERSION = 1


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder, fsync, then ``os.replace``: a crash
    mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # A process killed mid-write (SIGKILL, power loss) leaves its temporary file behind;
    # one writer per run directory (its lock) makes the leftovers safe to remove.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            stale.unlink()
        except OSError:
            pass


def load(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a zoo checkpoint; a missing, truncated or foreign file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle is a damaged or foreign file
        raise CheckpointError(f"cannot read checkpoint {path} (truncated or corrupt?): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a zoo checkpoint (no 'model' state)")
    return ckpt


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop touches, as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "python": _py_state_to_plain(random.getstate()),
        "numpy": {"kind": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_py_state_from_plain(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except RuntimeError:  # a different number of GPUs than when saved
            pass


def _py_state_to_plain(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _py_state_from_plain(s: list) -> tuple:
    version, internal, gauss = s
    return (version, tuple(internal), gauss)


def _shape(t: Any) -> str:
    return "(" + ", ".join(str(s) for s in getattr(t, "shape", ())) + ")"


def _listed(names: list[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def compare_weights(model: torch.nn.Module, state: dict[str, Any]) -> dict[str, list]:
    """How a state dict fits a model: keys that match (same name and shape), shape
    mismatches ``(name, checkpoint shape, model shape)``, missing and unexpected keys."""
    own = model.state_dict()
    matched, shapes = [], []
    for k, v in state.items():
        if k in own:
            # a module's extra state (``get_extra_state``: a tokenizer, a table) has no
            # fixed shape: the module reads it back itself
            if (k.rsplit(".", 1)[-1] == "_extra_state" or not isinstance(v, torch.Tensor)
                    or not isinstance(own[k], torch.Tensor) or v.shape == own[k].shape):
                matched.append(k)
            else:
                shapes.append((k, _shape(v), _shape(own[k])))
    return {"matched": matched, "shape_mismatch": shapes,
            "missing": [k for k in own if k not in state],
            "unexpected": [k for k in state if k not in own]}


def _mismatch_text(fit: dict[str, list]) -> str:
    parts = []
    if fit["shape_mismatch"]:
        parts.append(f"{len(fit['shape_mismatch'])} shape mismatch(es): " + _listed(
            [f"{k} {a} in the checkpoint vs {b} in the model" for k, a, b in fit["shape_mismatch"]]))
    if fit["missing"]:
        parts.append(f"{len(fit['missing'])} missing: {_listed(fit['missing'])}")
    if fit["unexpected"]:
        parts.append(f"{len(fit['unexpected'])} unexpected: {_listed(fit['unexpected'])}")
    return "; ".join(parts)


def load_model_state(model: torch.nn.Module, state: dict[str, Any], source: str | Path) -> None:
    """Load weights that must fit exactly (resume, evaluate); any mismatch is one line."""
    fit = compare_weights(model, state)
    if fit["shape_mismatch"] or fit["missing"] or fit["unexpected"]:
        hint = " (another model's checkpoint?)" if not fit["matched"] else ""
        raise CheckpointError(f"checkpoint {source} does not fit the run's model "
                              f"{type(model).__name__}{hint}: {_mismatch_text(fit)}")
    model.load_state_dict(state)


def init_weights(model: torch.nn.Module, path: str | Path) -> list[str]:
    """``init_from=``: load the weights of a checkpoint that a model shares with it (a
    pre-trained encoder under a new head). Returns the lines to print.

    Weights under a shared name with another shape are an error (they are listed), and so
    is a checkpoint that shares no weight at all with the model: silently training from
    scratch is not what ``init_from`` asks for. A transformers folder (``config.json`` +
    ``model.safetensors``) is read through ``zoo.interop``."""
    from zoo import interop

    ckpt = {"model": interop.folder_state(path, model)} if interop.is_folder(path) else load(path)
    fit = compare_weights(model, ckpt["model"])
    if fit["shape_mismatch"]:
        raise CheckpointError(f"init_from {path}: {_mismatch_text({**fit, 'missing': [], 'unexpected': []})}")
    if not fit["matched"]:
        raise CheckpointError(f"init_from {path} matches no weight of {type(model).__name__} "
                              f"(another model's checkpoint?): checkpoint keys "
                              f"{_listed(list(ckpt['model']), 3)}; model keys "
                              f"{_listed(list(model.state_dict()), 3)}")
    model.load_state_dict({k: ckpt["model"][k] for k in fit["matched"]}, strict=False)
    lines = [f"init_from {path}: {len(fit['matched'])} weights loaded, {len(fit['missing'])} missing keys, "
             f"{len(fit['unexpected'])} unexpected keys"]
    lines += [f"  missing: {k}" for k in fit["missing"][:10]]
    lines += [f"  unexpected: {k}" for k in fit["unexpected"][:10]]
    return lines
