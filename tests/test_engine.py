"""The trainer's contract, on a tiny two-group model: optimizer groups, exact resume,
non-finite handling, accumulation, schedules, early stopping, EMA, DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from zoo.cli import evaluate_main
from zoo.engine import checkpoint as C

ROOT = Path(__file__).resolve().parents[1]
BASE = ["model=two_group", "trainer.progress=false", "logger=none"]


def ckpt(run: Path, name: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / name, weights_only=True)


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_layout(train, tmp_path):
    run = tmp_path / "run"
    assert train(*BASE, f"hydra.run.dir={run}", "logger=tensorboard") == 0
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*"))
    m = json.loads((run / "metrics.json").read_text())
    assert m["steps"] == 20 and m["monitor"] == "mse" and m["mse"] > 0


def test_both_optimizer_groups_step(train, tmp_path):
    run = tmp_path / "run"
    assert train(*BASE, f"hydra.run.dir={run}", "trainer.max_steps=5") == 0
    state = ckpt(run)
    assert set(state["optimizers"]) == {"first", "second"}
    for group in ("first", "second"):
        steps = [float(s["step"]) for s in state["optimizers"][group]["state"].values()]
        assert steps and all(s == 5 for s in steps), (group, steps)
    # both parts of the model moved away from their initialisation
    torch.manual_seed(0)
    from zoo.models.testing import TwoGroupRegressor

    init = TwoGroupRegressor(features=8).state_dict()
    for k in ("body.0.weight", "head.weight"):
        assert not torch.equal(init[k], state["model"][k]), k


@pytest.mark.parametrize("stop_at", [3, 9])
def test_resume_is_bit_exact(train, tmp_path, stop_at):
    full, part = tmp_path / "full", tmp_path / "part"
    common = [*BASE, "trainer.ckpt_every=4", "trainer.val_every_steps=6", "model.dropout=0.3"]
    assert train(*common, f"hydra.run.dir={full}") == 0
    assert train(*common, f"hydra.run.dir={part}", f"trainer.interrupt_at={stop_at}") == 0
    assert ckpt(part)["step"] == stop_at
    assert train(f"resume={part}") == 0
    a, b = ckpt(full), ckpt(part)
    assert a["step"] == b["step"] == 20
    assert weights_equal(a["model"], b["model"])
    for g in a["optimizers"]:
        sa, sb = a["optimizers"][g]["state"], b["optimizers"][g]["state"]
        assert all(weights_equal(sa[i], sb[i]) for i in sa)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(train, tmp_path, capsys):
    run = tmp_path / "run"
    code = train(*BASE, f"hydra.run.dir={run}", "model.nan_at_step=7", "trainer.ckpt_every=2")
    assert code == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step 7" in err and "loss_first=nan" in err
    state = ckpt(run)
    assert state["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_non_finite_loss_skip(train, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(*BASE, f"hydra.run.dir={run}", "model.nan_at_step=7",
                 "trainer.on_nonfinite=skip") == 0
    assert "step skipped" in capsys.readouterr().out
    assert ckpt(run)["step"] == 20


def test_gradient_accumulation_matches_large_batch(train, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = [*BASE, "model.dropout=0.0", "trainer.max_steps=6", "optim=sgd", "optim.momentum=0.0",
              "optim.weight_decay=0.0", "optim.nesterov=false", "sched=constant"]
    assert train(*common, f"hydra.run.dir={a}", "data.batch_size=16") == 0
    assert train(*common, f"hydra.run.dir={b}", "data.batch_size=8", "trainer.accumulate=2") == 0
    wa, wb = ckpt(a)["model"], ckpt(b)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)


def test_scheduler_drives_optimizer_lr(train, tmp_path):
    run = tmp_path / "run"
    assert train(*BASE, f"hydra.run.dir={run}", "sched=step", "sched.step_size=5", "sched.gamma=0.5",
                 "optim.lr=0.01", "trainer.max_steps=12") == 0
    lr = ckpt(run)["optimizers"]["first"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.01 * 0.25)


def test_early_stopping(train, tmp_path):
    run = tmp_path / "run"
    # lr 0 never improves: stops after patience+1 validations without improvement
    assert train(*BASE, f"hydra.run.dir={run}", "optim.lr=0.0", "trainer.val_every_steps=2",
                 "trainer.patience=2") == 0
    m = json.loads((run / "metrics.json").read_text())
    assert m["stopped_early"] is True and m["steps"] == 8


def test_ema_weights_validate_and_save(train, tmp_path):
    run = tmp_path / "run"
    assert train(*BASE, f"hydra.run.dir={run}", "trainer.ema=0.9") == 0
    last, best = ckpt(run), ckpt(run, "best.pt")
    assert last["ema"] is not None
    assert weights_equal(best["model"], last["ema"]["shadow"])  # best = last here (mse falls)


def test_evaluate_equals_validation_numbers(train, tmp_path):
    run = tmp_path / "run"
    assert train(*BASE, f"hydra.run.dir={run}", "trainer.val_every_steps=5", "data.eval_batch_size=7") == 0
    logged = ckpt(run, "best.pt")["last_metrics"]
    out = tmp_path / "m.json"
    assert evaluate_main([f"run={run}", "split=val", f"output={out}"]) == 0
    got = json.loads(out.read_text())
    assert got["mse"] == logged["mse"] and got["r2"] == logged["r2"]
    # Another batch size changes only the float rounding of the model's own outputs.
    assert evaluate_main([f"run={run}", "split=val", f"output={out}", "batch_size=5"]) == 0
    assert json.loads(out.read_text())["mse"] == pytest.approx(logged["mse"], rel=1e-6)


def test_truncated_checkpoint_is_a_clear_error(train, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(*BASE, f"hydra.run.dir={run}", "trainer.max_steps=2") == 0
    p = run / "checkpoints" / "best.pt"
    p.write_bytes(p.read_bytes()[:200])
    assert evaluate_main([f"run={run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read checkpoint") and "truncated or corrupt" in err
    assert len(err.splitlines()) == 1
    with pytest.raises(C.CheckpointError):
        C.load(p)


def test_checkpoint_is_atomic_and_weights_only(tmp_path):
    p = tmp_path / "c.pt"
    C.save_atomic({"model": {"w": torch.ones(2)}, "rng": C.rng_state()}, p)
    state = C.load(p)
    C.set_rng_state(state["rng"])
    assert not list(tmp_path.glob(".*tmp"))


def test_torchrun_two_processes_on_cpu(config_dir, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "ZOO_CONFIG_DIR": str(config_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), "model=logistic_regression", "trainer.max_steps=30",
           "trainer.val_every_steps=15", "trainer.progress=false", "logger=none", f"hydra.run.dir={run}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run dir:") == 1  # rank 0 alone logs
    assert "processes=2" in proc.stdout
    assert "done: 30 steps" in proc.stdout  # flushed before the worker leaves via os._exit
    state = ckpt(run)
    assert state["step"] == 30
    # The validation numbers of the 2-process run equal a single-process evaluation of
    # the same checkpoint on the same split, exactly.
    out = tmp_path / "single.json"
    assert evaluate_main([f"run={run}", "split=val", f"output={out}",
                          "ckpt=" + str(run / "checkpoints" / "last.pt")]) == 0
    single = json.loads(out.read_text())
    logged = state["last_metrics"]
    assert single["num_samples"] == logged["num_samples"] == 359
    assert single["accuracy"] == logged["accuracy"]
    assert single["macro_f1"] == logged["macro_f1"]


def test_torchrun_user_error_is_one_line(config_dir, tmp_path):
    env = {**os.environ, "ZOO_CONFIG_DIR": str(config_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), "model=no_such_model", f"hydra.run.dir={tmp_path / 'r'}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert proc.stderr.count("error: unknown model 'no_such_model'") == 1  # rank 0 only


def test_fit_restores_signal_handlers(train, tmp_path):
    import signal

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert train(*BASE, f"hydra.run.dir={tmp_path / 'run'}") == 0
    # a finished trainer must not keep catching Ctrl-C (nor stay alive through the handler)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_bf16_autocast_on_cpu_and_deterministic_switch(train, tmp_path):
    run = tmp_path / "run"
    assert train(*BASE, f"hydra.run.dir={run}", "trainer.amp=bf16", "trainer.deterministic=true",
                 "trainer.max_steps=4") == 0
    assert all(torch.isfinite(v).all() for v in ckpt(run)["model"].values())


@pytest.mark.slow
def test_torchrun_non_finite_loss_stops_every_rank_together(config_dir, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "ZOO_CONFIG_DIR": str(config_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), *BASE, "model.nan_at_step=7", "trainer.ckpt_every=2",
           f"hydra.run.dir={run}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0 and "non-finite loss at step 7" in proc.stderr, proc.stderr[-3000:]
    state = ckpt(run)
    assert state["step"] == 6 and all(torch.isfinite(v).all() for v in state["model"].values())
