"""Checkpoints: full training state as state dicts and plain values, written atomically,
read with ``torch.load(weights_only=True)``.

A ``trainer.strategy=fsdp`` run keeps the same ``last.pt`` of plain values, but its
weights and optimizer states are a sharded ``torch.distributed.checkpoint`` (DCP)
folder beside it (``last.pt`` names it under ``"sharded"``): each process writes its own
shards, and a run resumes from them at any process count (DCP reshards on load).
``best.pt`` of such a run holds the full weights, as every other run's does.
"""

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


def load(path: str | Path, map_location: Any = "cpu", full: bool = True) -> dict[str, Any]:
    """Load a zoo checkpoint; a missing, truncated or foreign file raises CheckpointError.
    The weights of a sharded checkpoint are read whole into ``"model"`` unless ``full``
    is false (the trainer loads the shards itself)."""
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
    if ckpt.get("sharded") and full:
        ckpt["model"] = {**read_sharded_weights(path.parent / ckpt["sharded"]),
                         **(ckpt.get("extra_states") or {})}
    return ckpt


# --------------------------------------------------------------------------- sharded (FSDP)
def _dcp_dir(folder: Path) -> Path:
    if not (folder / ".metadata").is_file():
        raise CheckpointError(f"sharded checkpoint {folder} is missing or incomplete "
                              f"(no .metadata file)")
    return folder


def save_sharded(folder: str | Path, model: torch.nn.Module,
                 optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Every rank writes its shards of the weights and of each optimizer's state
    (collective; without a process group one process writes everything)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    state = {"model": _tensors_only(get_model_state_dict(model)),
             "optimizers": {k: get_optimizer_state_dict(model, opt) for k, opt in optimizers.items()}}
    dcp.save(state, checkpoint_id=str(folder), no_dist=not _dist_ready())


def load_sharded(folder: str | Path, model: torch.nn.Module,
                 optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Load a sharded checkpoint into ``model`` and ``optimizers`` as they are now laid
    out (sharded over any number of ranks, or whole in one process)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    folder = _dcp_dir(Path(folder))
    state = {"model": _tensors_only(get_model_state_dict(model)),
             "optimizers": {k: get_optimizer_state_dict(model, opt) for k, opt in optimizers.items()}}
    try:
        dcp.load(state, checkpoint_id=str(folder), no_dist=not _dist_ready())
    except Exception as e:  # noqa: BLE001 - a missing key or shard: a damaged or foreign folder
        raise CheckpointError(f"cannot read sharded checkpoint {folder}: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    set_model_state_dict(model, state["model"], options=StateDictOptions(strict=False))
    for k, opt in optimizers.items():
        set_optimizer_state_dict(model, opt, state["optimizers"][k])


def read_sharded_weights(folder: str | Path) -> dict[str, Any]:
    """The full weights of a sharded checkpoint, in one process (no process group):
    what ``evaluate.py`` and ``predict.py`` load."""
    # what torch's own dcp_to_torch_save does, without the file in between
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    folder = _dcp_dir(Path(folder))
    out: dict[str, Any] = {}
    try:
        _load_state_dict(out, storage_reader=FileSystemReader(str(folder)),
                         planner=_EmptyStateDictLoadPlanner(keys={"model"}), no_dist=True)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read sharded checkpoint {folder}: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return dict(out.get("model", {}))


def full_weights(model: torch.nn.Module) -> dict[str, Any]:
    """The whole ``state_dict`` of a sharded model on rank 0, on the CPU (collective;
    other ranks get an empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))


def _tensors_only(state: dict[str, Any]) -> dict[str, Any]:
    # A module's extra state (a tokenizer) changes size as it fills: it is kept whole in
    # last.pt (``extra_states``), not as shards of a fixed shape.
    return {k: v for k, v in state.items() if not k.endswith("_extra_state")}


def extra_states(model: torch.nn.Module) -> dict[str, Any]:
    """The ``_extra_state`` entries of ``model.state_dict()`` (modules that define
    ``get_extra_state``), without gathering any weight."""
    out = {}
    for name, m in model.named_modules():
        if type(m).get_extra_state is not torch.nn.Module.get_extra_state:
            out[f"{name}._extra_state" if name else "_extra_state"] = m.get_extra_state()
    return out


def load_extra_states(model: torch.nn.Module, states: dict[str, Any]) -> None:
    modules = dict(model.named_modules())
    for key, value in states.items():
        name = key[: -len("._extra_state")] if key != "_extra_state" else ""
        if name in modules:
            modules[name].set_extra_state(value)


def _dist_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


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
