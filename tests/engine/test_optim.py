"""Schedules built from _target_ (and from old runs' names), one-cycle equal to torch's,
the new linear and warmup-stable-decay shapes, no_decay_1d, loggers from _target_ and
the EMA equal to torch's AveragedModel over ema_module() only."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from zoo.engine.ema import ModelEMA
from zoo.engine.logging import RunLogger, TensorBoardLogger, build_logger
from zoo.engine.optim import build_optimizers, build_schedulers, lr_multiplier
from zoo.errors import UserError
from zoo.models.base import ZooModel

ROOT = Path(__file__).resolve().parents[2]


def _sched_cfg(name: str, **over):
    cfg = OmegaConf.load(ROOT / "zoo" / "configs" / "sched" / f"{name}.yaml")
    for k, v in over.items():
        cfg[k] = v
    return cfg


def _lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _opt(lr=0.1, cls=torch.optim.SGD, **kw):
    return cls([nn.Parameter(torch.zeros(2))], lr=lr, **kw)


def test_every_sched_config_builds_from_its_target():
    for path in sorted((ROOT / "zoo" / "configs" / "sched").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        assert "_target_" in cfg and "name" not in cfg, path.name
        opt = _opt()
        sched = build_schedulers({"main": opt}, cfg, 50)["main"]
        lrs = _lrs(sched, opt, 50)
        assert all(math.isfinite(v) and v >= 0 for v in lrs), path.name


def test_onecycle_is_torch_one_cycle():
    ours_opt = _opt(0.3, torch.optim.AdamW, betas=(0.9, 0.99))
    theirs_opt = _opt(0.3, torch.optim.AdamW, betas=(0.9, 0.99))
    ours = build_schedulers({"main": ours_opt}, _sched_cfg("onecycle", pct_start=0.25), 40)["main"]
    theirs = torch.optim.lr_scheduler.OneCycleLR(theirs_opt, max_lr=0.3, total_steps=40, pct_start=0.25)
    assert type(ours) is torch.optim.lr_scheduler.OneCycleLR
    for _ in range(40):
        assert ours_opt.param_groups[0]["lr"] == theirs_opt.param_groups[0]["lr"]
        assert ours_opt.param_groups[0]["betas"] == theirs_opt.param_groups[0]["betas"]
        ours_opt.step(), theirs_opt.step(), ours.step(), theirs.step()


def test_schedule_shapes():
    f = lr_multiplier(_sched_cfg("cosine", warmup_steps=10, min_lr_ratio=0.1), 110)
    assert f(0) == 0.0 and f(5) == pytest.approx(0.5) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    lin = lr_multiplier(_sched_cfg("linear", warmup_steps=10, min_lr_ratio=0.2), 110)
    assert lin(10) == 1.0 and lin(60) == pytest.approx(0.6) and lin(110) == pytest.approx(0.2)
    wsd = lr_multiplier(_sched_cfg("wsd", warmup_steps=10, decay_fraction=0.25), 100)
    assert wsd(5) == pytest.approx(0.5) and wsd(10) == wsd(74) == 1.0
    assert wsd(75) == 1.0 and wsd(100) == pytest.approx(0.0) and 0 < wsd(90) < 1
    sqrt = lr_multiplier(_sched_cfg("wsd", decay_fraction=0.5, decay="sqrt"), 100)
    assert sqrt(75) == pytest.approx(1 - math.sqrt(0.5))
    with pytest.raises(UserError, match="sched.decay"):
        lr_multiplier(_sched_cfg("wsd", decay="exp"), 10)


def test_old_run_configs_name_their_schedule():
    g = lr_multiplier({"name": "step", "warmup_steps": 0, "step_size": 10, "gamma": 0.5}, 100)
    assert [g(0), g(9), g(10), g(25)] == [1.0, 1.0, 0.5, 0.25]
    c = lr_multiplier({"name": "constant", "warmup_steps": 4, "warmup_start_factor": 0.5}, 10)
    assert [c(0), c(2), c(4), c(9)] == [0.5, 0.75, 1.0, 1.0]
    opt = _opt()
    old = {"name": "onecycle", "warmup_steps": 0, "warmup_start_factor": 0.0, "pct_start": 0.3,
           "div_factor": 25.0, "final_div_factor": 1e4}
    assert type(build_schedulers({"m": opt}, old, 10)["m"]) is torch.optim.lr_scheduler.OneCycleLR
    with pytest.raises(UserError, match="unknown sched 'poly'"):
        lr_multiplier({"name": "poly"}, 10)


def test_a_torch_scheduler_class_as_target():
    opt = _opt(1.0)
    s = build_schedulers({"m": opt}, {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 2,
                                      "gamma": 0.5}, 10)["m"]
    assert _lrs(s, opt, 5) == [1.0, 1.0, 0.5, 0.5, 0.25]


class _Net(ZooModel):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 1, bias=False)


def test_no_decay_1d_puts_biases_and_norms_in_a_group_without_decay():
    net = _Net()
    cfg = {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 0.1, "no_decay_1d": True}
    opt = build_optimizers(net.optimizer_groups(), cfg)["main"]
    decay, plain = opt.param_groups
    assert {id(p) for p in decay["params"]} == {id(net.lin.weight), id(net.head.weight)}
    assert {id(p) for p in plain["params"]} == {id(net.lin.bias), id(net.norm.weight), id(net.norm.bias)}
    assert decay["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    off = build_optimizers(net.optimizer_groups(), {**cfg, "no_decay_1d": False})["main"]
    assert len(off.param_groups) == 1 and off.param_groups[0]["weight_decay"] == 0.1


def test_transformer_configs_turn_no_decay_1d_on():
    for name in ("transformer", "gpt", "bert", "bert_finetune"):
        cfg = OmegaConf.load(ROOT / "zoo" / "configs" / "model" / f"{name}.yaml")
        assert cfg.optim.no_decay_1d is True
    for path in (ROOT / "zoo" / "configs" / "optim").glob("*.yaml"):
        assert OmegaConf.load(path).no_decay_1d is False


def test_loggers_from_target_and_old_names(tmp_path):
    tb = build_logger(OmegaConf.load(ROOT / "zoo" / "configs" / "logger" / "tensorboard.yaml"), tmp_path)
    assert type(tb) is TensorBoardLogger and tb.images_every == 1
    tb.scalars({"a": 1.0}, 1)
    tb.close()
    assert list((tmp_path / "tb").glob("events.*"))
    none = build_logger(OmegaConf.load(ROOT / "zoo" / "configs" / "logger" / "none.yaml"), tmp_path / "n")
    assert type(none) is RunLogger and not none.wants_images(0)
    assert type(build_logger({"name": "tensorboard", "images_every": 2}, tmp_path, enabled=False)) \
        is TensorBoardLogger
    with pytest.raises(UserError, match="unknown logger 'wandb'"):
        build_logger({"name": "wandb"}, tmp_path)


# --------------------------------------------------------------------------- EMA
class _GAN(ZooModel):
    def __init__(self) -> None:
        super().__init__()
        self.gen = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        self.disc = nn.Linear(4, 1)

    def ema_module(self) -> nn.Module:
        return self.gen


def _perturb(model: nn.Module, g: torch.Generator) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype))
        model.gen[1].running_mean.add_(torch.randn(4, generator=g, dtype=torch.float64))


def test_ema_equals_torch_averaged_model_on_the_ema_module_only():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    model = _GAN().double()
    ema = ModelEMA(model, 0.9, warmup=False)
    ref = AveragedModel(model.gen, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    g = torch.Generator().manual_seed(1)
    hand = None
    for _ in range(7):
        _perturb(model, g)
        ema.update()
        ref.update_parameters(model.gen)
        w = model.gen[0].weight.detach().clone()
        hand = w if hand is None else 0.9 * hand + 0.1 * w  # s1 = w1, s_t = 0.9 s + 0.1 w_t
    ours, theirs = ema.shadow, ref.module.state_dict()
    assert set(ours) == set(theirs) == set(model.gen.state_dict())
    for k in ours:
        assert (ours[k].double() - theirs[k].double()).abs().max() <= 1e-16, k
    assert (ours["0.weight"] - hand).abs().max() <= 1e-15
    full = ema.model_state(model)
    assert torch.equal(full["gen.0.weight"], ours["0.weight"])
    assert torch.equal(full["disc.weight"], model.disc.weight)  # not averaged
    before = model.gen[0].weight.detach().clone()
    with ema.swapped():
        assert torch.equal(model.gen[0].weight, ours["0.weight"])
    assert torch.equal(model.gen[0].weight, before)


def test_ema_state_of_older_runs_still_loads():
    model = nn.Sequential(nn.Linear(2, 2))
    model.ema_module = lambda: model  # the default of ZooModel
    ema = ModelEMA(model, 0.99)
    old = {"decay": 0.999, "updates": 5,
           "shadow": {k: torch.full_like(v, 3.0) for k, v in model.state_dict().items()}}
    ema.load_state_dict(old)
    assert ema.updates == 5 and ema.decay == 0.999
    assert all(torch.equal(v, torch.full_like(v, 3.0)) for v in ema.shadow.values())
    assert ema.state_dict()["shadow"].keys() == old["shadow"].keys()


def test_onecycle_takes_the_warmup_keys_of_every_schedule():
    # a model config's sched.warmup_steps (yolo sets 100) must work with sched=onecycle too
    ours_opt, theirs_opt = _opt(0.3, torch.optim.SGD), _opt(0.3, torch.optim.SGD)
    ours = build_schedulers({"main": ours_opt}, _sched_cfg("onecycle", warmup_steps=10,
                                                           warmup_start_factor=0.1), 40)["main"]
    theirs = torch.optim.lr_scheduler.OneCycleLR(theirs_opt, max_lr=0.3, total_steps=40,
                                                 pct_start=0.25, div_factor=10.0)
    for _ in range(40):
        assert ours_opt.param_groups[0]["lr"] == pytest.approx(theirs_opt.param_groups[0]["lr"])
        ours_opt.step(), theirs_opt.step(), ours.step(), theirs.step()


def test_ema_warmup_is_the_decay_schedule_on_torch_averaged_model():
    torch.manual_seed(0)
    model = _GAN().double()
    ema = ModelEMA(model, 0.9)  # warm-up on: the trainer's default
    g = torch.Generator().manual_seed(1)
    hand = None
    for n in range(12):
        _perturb(model, g)
        ema.update()
        w = model.gen[0].weight.detach().clone()
        d = min(0.9, (1 + n) / (10 + n))  # n updates were averaged before this one
        hand = w if hand is None else d * hand + (1 - d) * w
    assert (ema.shadow["0.weight"] - hand).abs().max() <= 1e-15
    assert ema.updates == 12
