"""One optimizer and one learning-rate schedule per model optimizer group, from the
``optim`` and ``sched`` configs.

Both are built from ``_target_``. An optimizer target is a torch optimizer class. A
schedule target is either one of the zoo's schedules below (a multiplier of the base
rate as a function of the optimizer step, run by torch's ``LambdaLR``), or
``OneCycle`` (torch's ``OneCycleLR``), or any torch ``LRScheduler`` class, built as
``Class(optimizer, **kwargs)``. Every schedule is stepped once per training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from zoo.engine.config import locate
from zoo.errors import UserError, choices
from zoo.registry import buildable

FUSED = {"torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD"}


def build_optimizers(groups: dict[str, list[torch.nn.Parameter]], optim_cfg: DictConfig | dict,
                     device: torch.device | None = None) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per group; on CUDA, Adam/AdamW/SGD use their fused kernels unless
    the config says ``fused: false``.

    ``no_decay_1d: true`` puts parameters with ``ndim <= 1`` (biases, norm weights) in a
    second parameter group without weight decay (as nanoGPT and timm do).
    """
    cfg = OmegaConf.to_container(optim_cfg, resolve=True) if isinstance(optim_cfg, DictConfig) \
        else dict(optim_cfg)
    target = cfg.pop("_target_")
    per_group = cfg.pop("groups", None) or {}
    no_decay_1d = bool(cfg.pop("no_decay_1d", False))
    unknown = set(per_group) - set(groups)
    if unknown:
        raise UserError(f"optim.groups names unknown optimizer group(s) {sorted(unknown)}; "
                        f"this model has: {choices(groups)}")
    cls = locate(target)
    if device is not None and device.type == "cuda" and target in FUSED:
        cfg.setdefault("fused", True)
    out = {}
    for name, params in groups.items():
        kwargs = {**cfg, **(per_group.get(name) or {})}
        for k, v in kwargs.items():
            if isinstance(v, list):
                kwargs[k] = tuple(v)  # betas
        params = list(params)
        param_groups: Any = params
        if no_decay_1d:
            decay = [p for p in params if p.ndim > 1]
            plain = [p for p in params if p.ndim <= 1]
            # the decayed group first: logs and schedules read param_groups[0]
            param_groups = [g for g in ({"params": decay}, {"params": plain, "weight_decay": 0.0})
                            if g["params"]]
        try:
            out[name] = cls(param_groups, **kwargs)
        except TypeError as e:
            raise UserError(f"bad optim option for {target}: {e}") from None
    return out


# --------------------------------------------------------------------------- schedules
@buildable
class Schedule:
    """A multiplier of the base learning rate per optimizer step (0-based), after a
    linear warm-up from ``warmup_start_factor`` to 1 over ``warmup_steps``."""

    def __init__(self, *, warmup_steps: int = 0, warmup_start_factor: float = 0.0) -> None:
        self.warmup_steps = int(warmup_steps or 0)
        self.warmup_start_factor = float(warmup_start_factor or 0.0)
        if self.warmup_steps < 0:
            raise UserError(f"sched.warmup_steps must be >= 0, got {warmup_steps}")

    def after_warmup(self, step: int, total: int) -> float:
        """The multiplier at ``step`` (>= warmup_steps) of a run of ``total`` steps."""
        return 1.0

    def multiplier(self, total_steps: int) -> Callable[[int], float]:
        total = max(int(total_steps), 1)
        warm, start = self.warmup_steps, self.warmup_start_factor

        def f(step: int) -> float:
            if step < warm:
                return start + (1.0 - start) * step / warm
            return self.after_warmup(step, total)

        return f

    def build(self, optimizer: torch.optim.Optimizer,
              total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, self.multiplier(total_steps))

    def _progress(self, step: int, total: int, start: int | None = None) -> float:
        """0 -> 1 from ``start`` (default: the end of the warm-up) to the last step."""
        start = self.warmup_steps if start is None else start
        return min(max(step - start, 0) / max(total - start, 1), 1.0)


class Constant(Schedule):
    """The base rate after the warm-up."""


class StepDecay(Schedule):
    """Multiply by ``gamma`` every ``step_size`` steps after the warm-up."""

    def __init__(self, *, step_size: int = 1000, gamma: float = 0.1, **kw: Any) -> None:
        super().__init__(**kw)
        self.step_size, self.gamma = int(step_size), float(gamma)
        if self.step_size < 1:
            raise UserError(f"sched.step_size must be >= 1, got {step_size}")

    def after_warmup(self, step: int, total: int) -> float:
        return self.gamma ** ((step - self.warmup_steps) // self.step_size)


class Cosine(Schedule):
    """Half a cosine from 1 to ``min_lr_ratio`` between the warm-up and the last step."""

    def __init__(self, *, min_lr_ratio: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_lr_ratio = float(min_lr_ratio)

    def after_warmup(self, step: int, total: int) -> float:
        p = self._progress(step, total)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


class LinearDecay(Schedule):
    """A straight line from 1 to ``min_lr_ratio`` between the warm-up and the last step."""

    def __init__(self, *, min_lr_ratio: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_lr_ratio = float(min_lr_ratio)

    def after_warmup(self, step: int, total: int) -> float:
        return 1.0 + (self.min_lr_ratio - 1.0) * self._progress(step, total)


class WarmupStableDecay(Schedule):
    """Warm-up, a long stable phase at the base rate, then a decay to ``min_lr_ratio``
    over the last ``decay_fraction`` of the run (the "WSD" schedule of MiniCPM,
    arXiv:2404.06395). ``decay``: linear, cosine or sqrt (``1 - sqrt(p)``)."""

    DECAYS = ("linear", "cosine", "sqrt")

    def __init__(self, *, decay_fraction: float = 0.2, min_lr_ratio: float = 0.0,
                 decay: str = "linear", **kw: Any) -> None:
        super().__init__(**kw)
        self.decay_fraction, self.min_lr_ratio, self.decay = float(decay_fraction), float(min_lr_ratio), decay
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise UserError(f"sched.decay_fraction must be in [0, 1], got {decay_fraction}")
        if decay not in self.DECAYS:
            raise UserError(f"unknown sched.decay '{decay}'; valid choices: {choices(self.DECAYS)}")

    def after_warmup(self, step: int, total: int) -> float:
        start = max(total - round(self.decay_fraction * total), self.warmup_steps)
        if step < start:
            return 1.0
        p = self._progress(step, total, start)
        shape = {"linear": 1.0 - p, "cosine": 0.5 * (1.0 + math.cos(math.pi * p)),
                 "sqrt": 1.0 - math.sqrt(p)}[self.decay]
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape


@buildable
class OneCycle:
    """Smith's one-cycle policy as torch implements it (``torch.optim.lr_scheduler.OneCycleLR``):
    the optimizer's lr is the peak; it starts at ``lr / div_factor``, rises over
    ``pct_start`` of the run and anneals to ``lr / (div_factor * final_div_factor)``;
    with ``cycle_momentum`` the momentum (Adam's beta1) moves the other way.

    The warm-up keys every schedule takes keep their meaning: ``warmup_steps > 0``
    replaces ``pct_start`` (the rise lasts that many steps) and ``warmup_start_factor > 0``
    replaces ``div_factor`` (the rise starts at that fraction of lr), so a model config's
    ``sched.warmup_steps`` also works with ``sched=onecycle``."""

    def __init__(self, *, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, anneal_strategy: str = "cos",
                 three_phase: bool = False, cycle_momentum: bool = True,
                 base_momentum: float = 0.85, max_momentum: float = 0.95,
                 warmup_steps: int = 0, warmup_start_factor: float = 0.0) -> None:
        self.warmup_steps = int(warmup_steps)
        if warmup_start_factor and warmup_start_factor > 0:
            div_factor = 1.0 / float(warmup_start_factor)
        self.kwargs = dict(pct_start=float(pct_start), div_factor=float(div_factor),
                           final_div_factor=float(final_div_factor), anneal_strategy=anneal_strategy,
                           three_phase=bool(three_phase), cycle_momentum=bool(cycle_momentum),
                           base_momentum=float(base_momentum), max_momentum=float(max_momentum))

    def build(self, optimizer: torch.optim.Optimizer,
              total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
        max_lr = [g["lr"] for g in optimizer.param_groups]
        total = max(int(total_steps), 2)
        kwargs = dict(self.kwargs)
        if self.warmup_steps > 0:
            kwargs["pct_start"] = min(self.warmup_steps / total, 0.99)
        try:
            return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr,
                                                       total_steps=total, **kwargs)
        except ValueError as e:
            raise UserError(f"bad sched option for OneCycle: {e}") from None


# Run directories written before schedules had a _target_ name them by ``name``.
LEGACY_NAMES = {"constant": "zoo.engine.optim.Constant", "step": "zoo.engine.optim.StepDecay",
                "cosine": "zoo.engine.optim.Cosine", "onecycle": "zoo.engine.optim.OneCycle"}


def schedule_spec(sched_cfg: DictConfig | dict | None) -> tuple[Any, dict[str, Any]]:
    """(class, kwargs) of a sched config."""
    s = OmegaConf.to_container(sched_cfg, resolve=True) if isinstance(sched_cfg, DictConfig) \
        else dict(sched_cfg or {})
    target = s.pop("_target_", None)
    if target is None:
        name = s.pop("name", "constant")
        if name not in LEGACY_NAMES:
            raise UserError(f"unknown sched '{name}'; valid choices: {choices(LEGACY_NAMES)}")
        target = LEGACY_NAMES[name]
        if name == "onecycle":  # the old hand-written one-cycle's warm-up keys
            s = {k: v for k, v in s.items() if k not in ("warmup_steps", "warmup_start_factor")}
    s.pop("name", None)
    return locate(target), s


def build_schedule(sched_cfg: DictConfig | dict | None) -> Any:
    cls, kwargs = schedule_spec(sched_cfg)
    if isinstance(cls, type) and issubclass(cls, torch.optim.lr_scheduler.LRScheduler):
        return _TorchSchedule(cls, kwargs)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UserError(f"bad sched option for {cls.__name__}: {e}") from None


class _TorchSchedule:
    """A torch LRScheduler class named in a config: ``Class(optimizer, **kwargs)``."""

    def __init__(self, cls: type, kwargs: dict[str, Any]) -> None:
        self.cls, self.kwargs = cls, kwargs

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        try:
            return self.cls(optimizer, **self.kwargs)
        except TypeError as e:
            raise UserError(f"bad sched option for {self.cls.__name__}: {e}") from None


def lr_multiplier(sched_cfg: DictConfig | dict, total_steps: int) -> Callable[[int], float]:
    """The multiplier function of a zoo schedule config (0-based step -> factor of the lr)."""
    sched = build_schedule(sched_cfg)
    if not isinstance(sched, Schedule):
        raise UserError(f"{type(sched).__name__} is not a multiplier schedule")
    return sched.multiplier(total_steps)


def build_schedulers(optimizers: dict[str, torch.optim.Optimizer], sched_cfg: DictConfig | dict,
                     total_steps: int) -> dict[str, Any]:
    sched = build_schedule(sched_cfg)
    return {name: sched.build(opt, total_steps) for name, opt in optimizers.items()}


def current_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])

