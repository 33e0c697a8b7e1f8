"""Export a trained run: ``python -m zoo.export run=DIR format=FORMAT [output=PATH]``.

Formats (default output under ``RUN/export/``):

- ``onnx`` -> ``model.onnx`` + ``model.onnx.json`` (what the graph takes and returns,
  the detector settings its post-processing needs, the exporter used and the check):
  ``torch.onnx.export`` with ``dynamo=True`` (torch.export), or the TorchScript-based
  exporter where torch.export cannot trace a model (torchvision's detectors, whose
  proposals and NMS have data-dependent sizes; any other model whose dynamo export
  fails, said on the command line). The file is then run by ``onnxruntime`` on
  validation samples and compared with PyTorch (``ATOL`` + ``RTOL`` x |y|, printed);
  a mismatch is an error. What each graph computes: :mod:`zoo.export.graphs`.
- ``torchscript`` -> ``model.pt``: ``torch.jit.trace`` of the same graph
  (``torch.jit.script`` for torchvision's detectors; where scripting fails, as for the
  zoo's SSD backbone, a trace of one image -> (boxes, scores, labels), said on the
  command line), checked the same way.
- ``safetensors`` -> ``model.safetensors`` (every tensor of the state dict, tied weights
  stored once) + ``config.yaml`` (the run's resolved config) beside it.
  :func:`load_safetensors` reads it back into a model built from that config.
- ``hf`` -> a ``save_pretrained`` folder of the transformers reference model
  (``zoo.interop.to_transformers``: ``model=gpt``, ``model=deepseek``), plus the run's
  ``tokenizer.json`` when it trained with one.

Optional packages: ``pip install -e ".[export]"`` (onnx, onnxruntime, onnxscript,
safetensors); ``.[hf]`` for transformers and tokenizers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from zoo.errors import UserError

FORMATS = ("onnx", "torchscript", "safetensors", "hf")
DEFAULT_NAMES = {"onnx": "model.onnx", "torchscript": "model.pt",
                 "safetensors": "model.safetensors", "hf": "hf"}
ATOL, RTOL = 1e-4, 1e-3   # float32 graphs, onnxruntime's CPU kernels vs PyTorch's
CHECK_SAMPLES = 4         # validation samples the exported model is checked on
OPSET = 18


class ExportMismatch(UserError):
    """The exported model does not reproduce PyTorch's outputs: a failed export, not a
    person's mistake (exit status 1)."""

    exit_code = 1


def require(module: str, extra: str = "export") -> Any:
    from zoo.interop import require as _require

    return _require(module, extra)


def check_format(fmt: str | None) -> str:
    if not fmt:
        raise UserError(f"give format=FORMAT; valid: {', '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}'; valid: {', '.join(FORMATS)}")
    return fmt


def default_output(run_dir: Path, fmt: str) -> Path:
    return Path(run_dir) / "export" / DEFAULT_NAMES[fmt]


def export_run(run: str, fmt: str, output: str | None = None, ckpt: str | None = None
               ) -> list[Path]:
    """Export the run's best (or ``ckpt``'s) weights in ``fmt``; returns the files written."""
    from zoo.engine.run import load_run

    check_format(fmt)
    # the optional packages are checked before the run is rebuilt
    needs = {"onnx": ["onnx", "onnxruntime", "onnxscript"], "safetensors": ["safetensors"],
             "hf": ["transformers"], "torchscript": []}[fmt]
    for mod in needs:
        require(mod, "hf" if mod == "transformers" else "export")
    r = load_run(run, ckpt, "cpu")
    r.model.eval()
    out = Path(output).expanduser() if output else default_output(r.run_dir, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if fmt == "safetensors":
            return save_safetensors(r.model, r.cfg, out)
        if fmt == "hf":
            return save_hf(r.model, out)
        from zoo.export import onnx as X

        if fmt == "onnx":
            return X.export_onnx(r.model, r.data, out)
        return X.export_torchscript(r.model, r.data, out)


# --------------------------------------------------------------------------- safetensors
def save_safetensors(model: torch.nn.Module, cfg: Any, out: Path) -> list[Path]:
    """Every tensor of the state dict once (a tied weight is stored under its first name,
    the others listed in the header's ``aliases``), and ``config.yaml`` beside it."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...], str], str] = {}
    for name, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            continue
        key = (t.data_ptr(), tuple(t.shape), str(t.dtype))
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().cpu().contiguous()
    meta = {"format": "pt", "zoo_model": str(cfg.model.get("_target_", "")),
            "aliases": json.dumps(aliases)}
    save_file(tensors, str(out), metadata=meta)
    cfg_path = out.parent / "config.yaml"
    cfg_path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    print(f"safetensors: {len(tensors)} tensors ({len(aliases)} tied names) -> {out}")
    return [out, cfg_path]


def load_safetensors(path: str | Path, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """The model of ``config.yaml`` beside ``path`` (or ``model``) with the file's weights."""
    from omegaconf import OmegaConf
    from safetensors import safe_open
    from safetensors.torch import load_file

    from zoo.engine import checkpoint as C
    from zoo.engine.config import build, check_run_config

    path = Path(path)
    if model is None:
        cfg = OmegaConf.load(path.parent / "config.yaml")
        check_run_config(cfg, str(path.parent / "config.yaml"))
        model = build(cfg.model, "model")
    state: dict[str, Any] = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    for name, kept in aliases.items():
        state[name] = state[kept]
    C.load_model_state(model, state, path)
    return model.eval()


# --------------------------------------------------------------------------- hf
def save_hf(model: torch.nn.Module, out: Path) -> list[Path]:
    from zoo.interop import to_transformers

    ref = to_transformers(model)
    out.mkdir(parents=True, exist_ok=True)
    ref.save_pretrained(str(out))
    spec = getattr(getattr(model, "tokenizer_slot", None), "spec", None)
    if spec:
        from zoo.data.tokenizers import tokenizer_from_spec, tokenizer_json

        text = tokenizer_json(tokenizer_from_spec(spec))
        if text is None:
            print(f"note: the run's {spec['kind']} tokenizer has no tokenizer.json form; "
                  "the folder holds the weights and config only")
        else:
            (out / "tokenizer.json").write_text(text, encoding="utf-8")
    written = sorted(p for p in out.iterdir() if p.is_file())
    print(f"hf: {type(ref).__name__} -> {out}/ ({', '.join(p.name for p in written)})")
    return written
