"""One optimizer and one LR scheduler per model optimizer group, from the optim/sched configs."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf

from zoo.engine.config import locate
from zoo.errors import UserError, choices

SCHEDULES = ("constant", "step", "cosine", "onecycle")


FUSED = {"torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD"}


def build_optimizers(groups: dict[str, list[torch.nn.Parameter]], optim_cfg: DictConfig,
                     device: torch.device | None = None) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per group; on CUDA, Adam/AdamW/SGD use their fused kernels unless
    the config says ``fused: false``."""
    cfg = OmegaConf.to_container(optim_cfg, resolve=True)
    target = cfg.pop("_target_")
    per_group = cfg.pop("groups", None) or {}
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
        try:
            out[name] = cls(params, **kwargs)
        except TypeError as e:
            raise UserError(f"bad optim option for {target}: {e}") from None
    return out


def lr_multiplier(sched_cfg: DictConfig | dict, total_steps: int) -> Callable[[int], float]:
    """The schedule as a function of the optimizer step (0-based) -> multiplier of the base lr."""
    s = dict(sched_cfg)
    name = s.get("name", "constant")
    if name not in SCHEDULES:
        raise UserError(f"unknown sched '{name}'; valid choices: {choices(SCHEDULES)}")
    total = max(int(total_steps), 1)
    warm = int(s.get("warmup_steps") or 0)
    start = float(s.get("warmup_start_factor") or 0.0)
    if name == "onecycle":
        if warm == 0:
            warm = int(float(s.get("pct_start", 0.3)) * total)
        start = 1.0 / float(s.get("div_factor", 25.0))
        floor = start / float(s.get("final_div_factor", 1e4))
    elif name == "cosine":
        floor = float(s.get("min_lr_ratio", 0.0))
    step_size = int(s.get("step_size", 1000))
    gamma = float(s.get("gamma", 0.1))

    def f(step: int) -> float:
        if step < warm:
            return start + (1.0 - start) * step / warm
        if name == "constant":
            return 1.0
        if name == "step":
            return gamma ** ((step - warm) // step_size)
        p = min((step - warm) / max(total - warm, 1), 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))

    return f


def build_schedulers(optimizers: dict[str, torch.optim.Optimizer], sched_cfg: DictConfig,
                     total_steps: int) -> dict[str, torch.optim.lr_scheduler.LambdaLR]:
    f = lr_multiplier(OmegaConf.to_container(sched_cfg, resolve=True), total_steps)
    return {name: torch.optim.lr_scheduler.LambdaLR(opt, f) for name, opt in optimizers.items()}


def current_lr(opt: torch.optim.Optimizer) -> float:
    return float(opt.param_groups[0]["lr"])


def state_dicts(objs: dict[str, Any]) -> dict[str, Any]:
    return {k: v.state_dict() for k, v in objs.items()}
