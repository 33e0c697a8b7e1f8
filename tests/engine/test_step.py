"""The step strategies through the real Trainer: manual steps (a 2:1 GAN, CycleGAN's
reuse of generated points, a gradient-free bandit) resume bit-exactly; a non-finite loss
in a later group leaves every group as before the step; no sync or gradient norm where
none is needed; crashes and signals leave a usable last.pt."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from zoo.engine import trainer as T
from zoo.engine.logging import RunLogger
from zoo.models.testing import ToyRegressionData, TwoGroupRegressor

from .toys import (
    EpsilonGreedyBandit,
    Gaussians2D,
    Rounds,
    TinyGAN,
    compose_cfg,
    fit,
    load,
    states_equal,
)


class Recorder(RunLogger):
    """Keeps every scalar logged, by step."""

    def __init__(self) -> None:
        super().__init__(".", enabled=False)
        self.logged: dict[int, dict[str, float]] = {}

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.logged.setdefault(step, {}).update(values)


@pytest.fixture
def recorder(monkeypatch):
    rec: list[Recorder] = []

    def make(cfg: Any, run_dir: Any, enabled: bool = True) -> Recorder:
        rec.append(Recorder())
        return rec[-1]

    monkeypatch.setattr(T, "build_logger", make)
    return rec


def _train_losses(logged: dict[int, dict[str, float]], after: int) -> dict[int, dict[str, float]]:
    return {s: {k: v for k, v in d.items() if k.startswith("train/") and k not in ("train/samples_per_s", "train/log_g_calls")}
            for s, d in logged.items() if s > after}


def _resume_exact(config_dir, tmp_path, monkeypatch, recorder, model_fn, data_fn, overrides,
                  stop_at: int) -> tuple[dict, dict]:
    cfg = compose_cfg(config_dir, "trainer.log_every=1", *overrides)
    full, part = tmp_path / "full", tmp_path / "part"
    fit(cfg, full, model_fn, data_fn, monkeypatch=monkeypatch)
    cut = compose_cfg(config_dir, "trainer.log_every=1", *overrides, f"trainer.interrupt_at={stop_at}")
    summary = fit(cut, part, model_fn, data_fn, monkeypatch=monkeypatch)
    assert summary["interrupted"] and summary["signal"] is None and load(part)["step"] == stop_at
    fit(cfg, part, model_fn, data_fn, resume=True, monkeypatch=monkeypatch)
    a, b = load(full), load(part)
    for key in ("model", "optimizers", "schedulers", "ema", "step", "epoch", "batch_in_epoch"):
        assert states_equal(a[key], b[key]), key
    full_log, resumed_log = recorder[0].logged, recorder[2].logged
    assert _train_losses(full_log, stop_at) == _train_losses(resumed_log, stop_at)
    assert _train_losses(resumed_log, stop_at)  # the comparison is not empty
    return a, full_log


GAN_ARGS = ["trainer.max_steps=12", "trainer.ckpt_every=5", "trainer.val_every_steps=4",
            "data.batch_size=16", "optim.lr=0.01", "sched=cosine", "sched.warmup_steps=3"]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_gan_two_to_one_ratio_resumes_bit_exactly(config_dir, tmp_path, monkeypatch, recorder,
                                                  accumulate):
    made: list[TinyGAN] = []

    def model() -> TinyGAN:
        made.append(TinyGAN(order="ratio", d_steps=2))
        return made[-1]

    state, logged = _resume_exact(
        config_dir, tmp_path, monkeypatch, recorder, model,
        lambda: Gaussians2D(batch_size=16), [*GAN_ARGS, f"trainer.accumulate={accumulate}",
                                             "trainer.ema=0.9"], stop_at=5)
    # every micro-batch of each window, in each of the two discriminator passes
    assert made[0].calls["D"] == 12 * 2 * accumulate
    opt = state["optimizers"]
    d_steps = {float(s["step"]) for s in opt["discriminator"]["state"].values()}
    g_steps = {float(s["step"]) for s in opt["generator"]["state"].values()}
    assert d_steps == {24.0} and g_steps == {12.0}  # two discriminator steps per generator step
    # each schedule advanced once per training step, whatever the number of optimizer steps
    assert state["schedulers"]["discriminator"]["last_epoch"] == 12
    assert state["schedulers"]["generator"]["last_epoch"] == 12
    assert {"train/loss_discriminator", "train/loss_generator", "train/grad_norm/discriminator",
            "train/grad_norm/generator", "train/lr/generator"} <= set(logged[3])
    # the EMA covers the generator only (ema_module)
    assert set(state["ema"]["shadow"]) == {k[2:] for k in state["model"] if k.startswith("G.")}


def test_cyclegan_order_reuses_generated_points(config_dir, tmp_path, monkeypatch, recorder):
    made: list[TinyGAN] = []

    def model() -> TinyGAN:
        made.append(TinyGAN(order="reuse"))
        return made[-1]

    _resume_exact(config_dir, tmp_path, monkeypatch, recorder, model,
                  lambda: Gaussians2D(batch_size=16), GAN_ARGS, stop_at=7)
    # the uninterrupted run: the generator ran once per step, the discriminator once
    assert made[0].calls == {"G": 12, "D": 12}
    assert recorder[0].logged[12]["train/log_g_calls"] == 12.0


def test_gradient_free_bandit_logs_each_round_and_resumes_exactly(config_dir, tmp_path,
                                                                  monkeypatch, recorder):
    state, logged = _resume_exact(
        config_dir, tmp_path, monkeypatch, recorder, lambda: EpsilonGreedyBandit(epsilon=0.3),
        lambda: Rounds(n=16, batch_size=1), ["trainer.max_steps=40", "trainer.ckpt_every=10"],
        stop_at=17)
    assert float(state["model"]["counts"].sum()) == 40
    assert state["optimizers"] == {} and state["step"] == 40
    assert sorted(logged) == list(range(1, 41))  # one log per round
    assert all("train/reward" in v and "train/regret" in v for v in logged.values())
    assert int(state["model"]["values"].argmax()) == 2  # it found the best arm


# --------------------------------------------------------------------------- non-finite
class NanInSecondGroup(TwoGroupRegressor):
    """NaN in group "second" on the given training step, after "first" has stepped."""

    def __init__(self, nan_step: int, **kw: Any) -> None:
        super().__init__(features=8, dropout=0.0, **kw)
        self.nan_step = nan_step

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        out = super().training_step(batch, group)
        if group == "second" and self.calls["second"] == self.nan_step:
            out["loss_second"] = out["loss_second"] * float("nan")
        return out


NAN_ARGS = ["optim=adamw", "sched=cosine", "sched.warmup_steps=2", "trainer.max_steps=10",
            "trainer.ckpt_every=100", "model.dropout=0.0"]


@pytest.mark.parametrize("how", ["log_every=1", "skip"])
def test_nan_in_second_group_leaves_every_group_as_before(config_dir, tmp_path, monkeypatch, how):
    data = lambda: ToyRegressionData(batch_size=16)
    before = tmp_path / "before"
    fit(compose_cfg(config_dir, *NAN_ARGS, "trainer.interrupt_at=5"), before,
        lambda: NanInSecondGroup(nan_step=6), data, monkeypatch=monkeypatch)
    run = tmp_path / "run"
    if how == "skip":
        from zoo.engine import step as S

        seen: list[dict] = []
        real_run = S.Stepper.run

        def run_and_capture(self, window, step, *, check, log):
            try:
                return real_run(self, window, step, check=check, log=log)
            except S.NonFinite:  # the state right after the skipped step
                seen.append(copy.deepcopy({
                    "step": step - 1, "model": self.model.state_dict(),
                    "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
                    "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()}}))
                raise

        monkeypatch.setattr(S.Stepper, "run", run_and_capture)
        cfg = compose_cfg(config_dir, *NAN_ARGS, "trainer.on_nonfinite=skip")
        fit(cfg, run, lambda: NanInSecondGroup(nan_step=6), data, monkeypatch=monkeypatch)
        assert len(seen) == 1 and load(run)["step"] == 10  # one window dropped, the run went on
        after = seen[0]
    else:
        cfg = compose_cfg(config_dir, *NAN_ARGS, "trainer.log_every=1")
        with pytest.raises(T.TrainingStopped, match=r"non-finite loss at step 6 \(group 'second'\)"):
            fit(cfg, run, lambda: NanInSecondGroup(nan_step=6), data, monkeypatch=monkeypatch)
        after = load(run)
    expect = load(before)
    assert after["step"] == expect["step"] == 5
    for key in ("model", "optimizers", "schedulers"):
        assert states_equal(after[key], expect[key]), key


def test_unchecked_nan_stops_without_saving_spoiled_weights(config_dir, tmp_path, monkeypatch):
    """Between sync points the check waits; the spoiled weights are never saved."""
    run = tmp_path / "run"
    cfg = compose_cfg(config_dir, *NAN_ARGS, "trainer.log_every=4", "trainer.ckpt_every=4")
    with pytest.raises(T.TrainingStopped, match=r"step 6 .*last good state \(step 4\)"):
        fit(cfg, run, lambda: NanInSecondGroup(nan_step=6), lambda: ToyRegressionData(batch_size=16),
            monkeypatch=monkeypatch)
    state = load(run)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_manual_nan_in_generator_rolls_back_both_discriminator_steps(config_dir, tmp_path,
                                                                     monkeypatch):
    data = lambda: Gaussians2D(batch_size=16)
    before, run = tmp_path / "before", tmp_path / "run"
    args = [*GAN_ARGS, "trainer.log_every=1"]
    fit(compose_cfg(config_dir, *args, "trainer.interrupt_at=3"), before,
        lambda: TinyGAN(dropout=0.0), data, monkeypatch=monkeypatch)
    with pytest.raises(T.TrainingStopped, match="step 4 .group 'generator'"):
        fit(compose_cfg(config_dir, *args), run,
            lambda: TinyGAN(dropout=0.0, nan_in="generator", nan_at=4), data, monkeypatch=monkeypatch)
    a, b = load(before), load(run)
    assert a["step"] == b["step"] == 3
    for key in ("model", "optimizers", "schedulers"):
        assert states_equal(a[key], b[key]), key


# --------------------------------------------------------------------------- per-step cost
def test_sync_and_grad_norm_only_where_needed(config_dir, tmp_path, monkeypatch):
    from zoo.engine import step as S

    checks, norms = [], []
    run = S.Stepper.run

    def counting_run(self, window, step, *, check, log):
        checks.append((step, check, log))
        return run(self, window, step, check=check, log=log)

    real_norm = torch.nn.utils.get_total_norm
    monkeypatch.setattr(S.Stepper, "run", counting_run)
    monkeypatch.setattr(torch.nn.utils, "get_total_norm", lambda *a, **k: norms.append(1) or real_norm(*a, **k))
    cfg = compose_cfg(config_dir, "trainer.max_steps=12", "trainer.log_every=5",
                      "trainer.ckpt_every=100", "trainer.val_every_steps=6")
    fit(cfg, tmp_path / "run", lambda: TwoGroupRegressor(features=8), monkeypatch=monkeypatch)
    assert [s for s, c, _ in checks if c] == [5, 6, 10, 12]
    assert [s for s, _, lg in checks if lg] == [5, 10, 12]
    assert len(norms) == 3 * 2  # two groups, log steps only (no clipping)


def test_unchecked_steps_never_read_the_device(config_dir, tmp_path, monkeypatch):
    """No ``.item()``, ``bool()`` or ``float()`` of a tensor inside an unchecked step."""
    from zoo.engine import step as S

    reads: list[int] = []
    run = S.Stepper.run

    def watched_run(self, window, step, *, check, log):
        if check:
            return run(self, window, step, check=check, log=log)
        with monkeypatch.context() as m:
            for name in ("item", "__bool__", "__float__", "tolist"):
                real = getattr(torch.Tensor, name)
                m.setattr(torch.Tensor, name,
                          lambda self, *a, _real=real, **k: reads.append(step) or _real(self, *a, **k))
            return run(self, window, step, check=check, log=log)

    monkeypatch.setattr(S.Stepper, "run", watched_run)
    cfg = compose_cfg(config_dir, "trainer.max_steps=8", "trainer.log_every=4", "optim=sgd", "optim.lr=0.01",
                      "sched=constant", "trainer.ckpt_every=100")
    fit(cfg, tmp_path / "run", lambda: TwoGroupRegressor(features=8), monkeypatch=monkeypatch)
    assert reads == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_unchecked_cuda_steps_do_not_synchronise(config_dir, tmp_path, monkeypatch):
    """CUDA's own sync detector raises on any host synchronisation in an unchecked step."""
    from zoo.engine import step as S

    unchecked = []
    run = S.Stepper.run

    def strict_run(self, window, step, *, check, log):
        if check:
            return run(self, window, step, check=check, log=log)
        unchecked.append(step)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            return run(self, window, step, check=check, log=log)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(S.Stepper, "run", strict_run)
    cfg = compose_cfg(config_dir, "trainer.max_steps=8", "trainer.log_every=4", "optim=adamw",
                      "trainer.ckpt_every=100", "trainer.amp=bf16")
    fit(cfg, tmp_path / "run", lambda: TwoGroupRegressor(features=8), monkeypatch=monkeypatch,
        device="cuda")
    assert unchecked == [1, 2, 3, 5, 6, 7]


# --------------------------------------------------------------------------- crashes, signals
class CrashAt(TwoGroupRegressor):
    def __init__(self, crash_step: int, group: str, **kw: Any) -> None:
        super().__init__(features=8, **kw)
        self.crash_step, self.crash_group = crash_step, group

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        if group == self.crash_group and self.calls[group] + 1 == self.crash_step:
            raise RuntimeError("boom")
        return super().training_step(batch, group)


def test_crash_before_any_update_saves_the_last_completed_step(config_dir, tmp_path, monkeypatch):
    ref, run = tmp_path / "ref", tmp_path / "run"
    args = ["trainer.max_steps=10", "trainer.ckpt_every=100", "model.dropout=0.0"]
    fit(compose_cfg(config_dir, *args, "trainer.interrupt_at=6"), ref,
        lambda: TwoGroupRegressor(features=8, dropout=0.0), monkeypatch=monkeypatch)
    with pytest.raises(T.TrainingCrashed) as info:
        fit(compose_cfg(config_dir, *args), run, lambda: CrashAt(7, "first", dropout=0.0),
            monkeypatch=monkeypatch)
    e = info.value
    assert isinstance(e.__cause__, RuntimeError) and str(e.__cause__) == "boom"
    assert e.checkpoint == run / "checkpoints" / "last.pt" and e.step == 6
    a, b = load(ref), load(run)
    for key in ("model", "optimizers", "schedulers", "step", "epoch", "batch_in_epoch"):
        assert states_equal(a[key], b[key]), key


def test_crash_in_a_half_applied_step_keeps_the_file_on_disk(config_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = compose_cfg(config_dir, "trainer.max_steps=10", "trainer.ckpt_every=4")
    with pytest.raises(T.TrainingCrashed, match="last.pt holds step 4") as info:
        fit(cfg, run, lambda: CrashAt(7, "second"), monkeypatch=monkeypatch)  # after "first" stepped
    assert info.value.step == 4 and load(run)["step"] == 4


def test_crash_in_validation_saves_the_step_just_completed(config_dir, tmp_path, monkeypatch):
    class BadPredict(TwoGroupRegressor):
        def predict(self, batch: Any) -> torch.Tensor:
            raise RuntimeError("broken predict")

    run = tmp_path / "run"
    cfg = compose_cfg(config_dir, "trainer.max_steps=10", "trainer.val_every_steps=3",
                      "trainer.ckpt_every=2")
    with pytest.raises(T.TrainingCrashed, match="last.pt holds step 3") as info:
        fit(cfg, run, lambda: BadPredict(features=8), monkeypatch=monkeypatch)
    assert "broken predict" in str(info.value.__cause__) and load(run)["step"] == 3


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_last_and_says_which(config_dir, tmp_path, monkeypatch, sig):
    class SignalAt(TwoGroupRegressor):
        def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
            if group == "second" and self.calls["second"] == 3:
                os.kill(os.getpid(), sig)
            return super().training_step(batch, group)

    run = tmp_path / "run"
    summary = fit(compose_cfg(config_dir, "trainer.max_steps=10"), run,
                  lambda: SignalAt(features=8), monkeypatch=monkeypatch)
    assert summary["interrupted"] is True and summary["signal"] == int(sig)
    assert load(run)["step"] == 4  # the signal's step finished, the next one was not taken


@pytest.mark.slow
@pytest.mark.parametrize("order", ["ratio", "reuse"])
def test_manual_step_under_torchrun_keeps_ranks_equal(config_dir, tmp_path, order):
    import re
    import subprocess
    import sys

    env = {**os.environ, "ZOO_CONFIG_DIR": str(config_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).with_name("ddp_gan.py")), order, str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = re.findall(r"rank (\d) steps 6 checksum (\S+)", proc.stdout)
    assert len(sums) == 2 and sums[0][1] == sums[1][1], proc.stdout
