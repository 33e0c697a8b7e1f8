"""What the keys every run has may hold: trainer, optimizer, scheduler warm-up, data
loader and the seed.

Each section is a dataclass used as a schema: a field's type says what the key may
hold (``X | None``: null allowed; ``Literal``: the choices), its ``key(...)`` metadata
the range. Adding a key is one line. :func:`validate` checks a composed config (or one
read from a run directory) and raises a one-line ``UserError`` naming the key, the
value and what is allowed. ``Trainer`` is closed: an unknown key is an error that
names the closest valid one. The others are open: data configs carry their own
metadata, optimizers and schedules their own constructor arguments (unknown optimizer
arguments are caught against the optimizer class's signature).
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
import types
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from zoo.errors import UserError

_UNIONS = (Union, types.UnionType)  # Optional[int] and int | None
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def key(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
        lt: float | None = None, pattern: re.Pattern | None = None, allowed: str = "",
        noun: str = "") -> Any:
    """A schema field: bounds on a number, a pattern for a string; ``allowed`` overrides
    the generated description of what is allowed, ``noun`` names a bad value
    ("unknown device 'tpu'")."""
    return field(default=None, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt,
                                         "pattern": pattern, "allowed": allowed, "noun": noun})


@dataclass
class Trainer:
    device: str = key(pattern=_DEVICE, allowed="auto, cpu, cuda, cuda:N or mps", noun="device")
    max_epochs: int | None = key(ge=1)
    max_steps: int | None = key(ge=1)
    val_every: int | None = key(ge=1)
    val_every_steps: int | None = key(ge=1)
    ckpt_every: int | None = key(ge=1)
    log_every: int = key(ge=1)
    monitor: str | None = key()
    mode: Literal["max", "min"] = key()
    patience: int | None = key(ge=1)
    accumulate: int = key(ge=1)
    clip_grad_norm: float | None = key(gt=0)
    amp: Literal["auto", "off", "bf16", "fp16"] = key()
    ema: float | None = key(gt=0, lt=1)
    ema_warmup: bool = key()
    compile: bool = key()
    deterministic: bool = key()
    on_nonfinite: Literal["stop", "skip"] = key()
    interrupt_at: int | None = key(ge=1)
    limit_val_batches: int | None = key(ge=1)
    max_time: float | None = key(gt=0)
    progress: bool = key()
    channels_last: bool = key()
    strategy: Literal["ddp", "fsdp"] = key()
    sync_batchnorm: bool = key()
    apply_last: bool | None = key()  # read from run directories written before the debug group


@dataclass
class Optim:
    lr: float = key(ge=0)
    weight_decay: float = key(ge=0)
    betas: tuple[float, float] = key(ge=0, lt=1)
    momentum: float = key(ge=0)
    dampening: float = key(ge=0)
    eps: float = key(gt=0)
    nesterov: bool = key()
    amsgrad: bool = key()
    maximize: bool = key()
    fused: bool | None = key()
    foreach: bool | None = key()
    no_decay_1d: bool = key()


_HIDDEN = ("apply_last",)  # accepted, not advertised

# Keys of the optim node the engine reads itself (not optimizer constructor arguments).
ENGINE_OPTIM_KEYS = ("_target_", "groups", "no_decay_1d")


@dataclass
class Sched:
    warmup_steps: int = key(ge=0)
    warmup_start_factor: float = key(ge=0, le=1)
    min_lr_ratio: float = key(ge=0, le=1)
    step_size: int = key(ge=1)
    gamma: float = key(gt=0)
    pct_start: float = key(gt=0, lt=1)
    div_factor: float = key(gt=0)
    final_div_factor: float = key(gt=0)


@dataclass
class DataLoader:
    batch_size: int = key(ge=1)
    eval_batch_size: int | None = key(ge=1)
    num_workers: int = key(ge=0)
    persistent_workers: bool = key()
    prefetch_factor: int | None = key(ge=1)


@dataclass
class Top:
    seed: int = key()
    resume: str | None = key()
    init_from: str | None = key()


# (config path, schema, closed: unknown keys are errors)
SECTIONS: tuple[tuple[str, type, bool], ...] = (
    ("", Top, False),
    ("trainer", Trainer, True),
    ("optim", Optim, False),
    ("sched", Sched, False),
    ("data", DataLoader, False),
)


def validate(cfg: Any) -> None:
    """Check a resolved config (a DictConfig or a plain dict); raise UserError on the
    first bad value."""
    from omegaconf import DictConfig, OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    for path, schema, closed in SECTIONS:
        node = c if not path else c.get(path)
        if node is None:
            continue
        if not isinstance(node, dict):
            raise UserError(f"{path}={_show(node)}: expected a config section (key: value ...)")
        check_section(node, schema, path, closed=closed)
    trainer = c.get("trainer")
    if isinstance(trainer, dict) and "max_steps" in trainer and "max_epochs" in trainer \
            and trainer["max_steps"] is None and trainer["max_epochs"] is None:
        raise UserError("trainer.max_steps and trainer.max_epochs are both null; set one "
                        "(e.g. trainer.max_steps=1000)")
    optim = c.get("optim")
    if isinstance(optim, dict):
        _check_optim(optim)


def check_section(node: dict, schema: type, prefix: str, *, closed: bool) -> None:
    spec = {f.name: f for f in fields(schema)}
    hints = get_type_hints(schema)
    for k, v in node.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        if k not in spec:
            if closed:
                valid = [n for n in spec if n not in _HIDDEN]
                raise UserError(f"unknown key '{name}'{_did_you_mean(k, valid, prefix)}; "
                                f"valid keys: {', '.join(valid)}")
            continue
        if v == "???":  # missing mandatory value: reported when the config is resolved
            continue
        check_value(name, v, hints[k], spec[k].metadata)


def _check_optim(optim: dict) -> None:
    """Per-group overrides follow the same rules; every key must be an argument of the
    optimizer class (checked against its signature)."""
    groups = optim.get("groups") or {}
    if not isinstance(groups, dict):
        raise UserError(f"optim.groups={_show(groups)}: expected a mapping of optimizer group "
                        "-> overrides, e.g. {generator: {lr: 2e-4}}")
    for g, over in groups.items():
        if not isinstance(over, dict):
            raise UserError(f"optim.groups.{g}={_show(over)}: expected overrides such as {{lr: 2e-4}}")
        check_section(over, Optim, f"optim.groups.{g}", closed=False)
    target = optim.get("_target_")
    if not isinstance(target, str):
        return
    from zoo.engine.config import locate

    cls = locate(target, "optim")
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n != "params"]
    for prefix, node in [("optim", optim), *((f"optim.groups.{g}", o) for g, o in groups.items())]:
        for k in node:
            if k not in valid and k not in ENGINE_OPTIM_KEYS:
                raise UserError(f"unknown key '{prefix}.{k}' for {target}"
                                f"{_did_you_mean(k, valid, prefix)}; valid keys: "
                                f"{', '.join(valid + list(ENGINE_OPTIM_KEYS[1:]))}")


def check_value(name: str, value: Any, typ: Any, meta: dict) -> None:
    if not _fits(value, typ, meta):
        what = f"unknown {meta['noun']} '{_show(value)}'; " if meta.get("noun") else ""
        raise UserError(f"{name}={_show(value)}: {what}expected {describe(typ, meta)}")


def _fits(value: Any, typ: Any, meta: dict) -> bool:
    origin = get_origin(typ)
    if origin in _UNIONS:
        return any(_fits(value, t, meta) for t in get_args(typ))
    if typ is type(None):
        return value is None
    if origin is Literal:
        return isinstance(value, str) and value in get_args(typ)
    if origin is tuple:
        items = get_args(typ)
        return (isinstance(value, (list, tuple)) and len(value) == len(items)
                and all(_fits(v, t, meta) for v, t in zip(value, items)))
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool) and _in_range(value, meta)
    if typ is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and _in_range(value, meta))
    if typ is str:
        pattern = meta.get("pattern")
        return isinstance(value, str) and (pattern is None or bool(pattern.match(value)))
    raise TypeError(f"unsupported schema type {typ}")


def _in_range(v: float, meta: dict) -> bool:
    return not ((meta.get("ge") is not None and v < meta["ge"])
                or (meta.get("gt") is not None and v <= meta["gt"])
                or (meta.get("le") is not None and v > meta["le"])
                or (meta.get("lt") is not None and v >= meta["lt"]))


def describe(typ: Any, meta: dict) -> str:
    """What a key may hold, in words: 'an integer >= 1, or null'."""
    if meta.get("allowed"):
        return meta["allowed"]
    origin = get_origin(typ)
    if origin in _UNIONS:
        args = [t for t in get_args(typ) if t is not type(None)]
        text = " or ".join(describe(t, meta) for t in args)
        return text + (", or null" if len(args) < len(get_args(typ)) else "")
    if origin is Literal:
        return "one of " + ", ".join(get_args(typ))
    if origin is tuple:
        return f"a list of {len(get_args(typ))} numbers, each {_bounds(meta) or 'finite'}"
    if typ is bool:
        return "true or false"
    if typ is int:
        return "an integer" + (f" {_bounds(meta)}" if _bounds(meta) else "")
    if typ is float:
        return "a number" + (f" {_bounds(meta)}" if _bounds(meta) else "")
    return "a string"


def _bounds(meta: dict) -> str:
    lo = (f">= {_num(meta['ge'])}" if meta.get("ge") is not None
          else f"> {_num(meta['gt'])}" if meta.get("gt") is not None else "")
    hi = (f"<= {_num(meta['le'])}" if meta.get("le") is not None
          else f"< {_num(meta['lt'])}" if meta.get("lt") is not None else "")
    if lo and hi:
        left = "[" if meta.get("ge") is not None else "("
        right = "]" if meta.get("le") is not None else ")"
        low = meta["ge"] if meta.get("ge") is not None else meta["gt"]
        high = meta["le"] if meta.get("le") is not None else meta["lt"]
        return f"in {left}{_num(low)}, {_num(high)}{right}"
    return lo or hi


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value and not value.isspace() else repr(value)
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(k: Any, valid: Any, prefix: str) -> str:
    close = difflib.get_close_matches(str(k), [str(v) for v in valid], n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)"
