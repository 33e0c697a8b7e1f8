"""The life of a run: the library entry, unique run directories, the lock, train.log,
exit statuses after signals and crashes, init_from, and checkpoints that survive a
write that never finished."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import one_line_error
from zoo.cli import train_main
from zoo.engine import checkpoint as C
from zoo.engine import run as R
from zoo.errors import CheckpointError, UserError
from zoo.models.testing import TwoGroupRegressor

ROOT = Path(__file__).resolve().parents[1]
BASE = ["model=two_group", "trainer.progress=false", "logger=none"]


def ckpt(run: Path, name: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / name, weights_only=True)




@pytest.fixture
def at_call(monkeypatch):
    """at_call(n, fn): run fn() once, inside the n-th training_step of group "first"."""
    def install(n: int, fn) -> None:
        original = TwoGroupRegressor.training_step
        state = {"calls": 0}

        def patched(self, batch, group="main"):
            if group == "first":
                state["calls"] += 1
                if state["calls"] == n:
                    fn()
            return original(self, batch, group)

        monkeypatch.setattr(TwoGroupRegressor, "training_step", patched)

    return install


# --------------------------------------------------------------------------- library entry
def test_train_is_a_library_function(config_dir, tmp_path):
    cfg, run_dir, explicit = R.new_config(config_dir, [*BASE, f"hydra.run.dir={tmp_path / 'run'}"])
    assert explicit and run_dir == tmp_path / "run"
    summary = R.train(cfg, run_dir)
    assert summary["steps"] == 20 and summary["interrupted"] is False
    assert R.exit_status(summary) == 0
    assert ckpt(run_dir)["step"] == 20
    assert (run_dir / "config.yaml").is_file() and (run_dir / "train.log").is_file()
    # a directory that holds a run is not trained into again
    with pytest.raises(UserError, match="already holds a run"):
        R.train(cfg, run_dir)


# --------------------------------------------------------------------------- run directories
def test_claim_run_dir_never_shares(tmp_path):
    base = tmp_path / "outputs" / "12-00-00_lenet"
    got = [R.claim_run_dir(base) for _ in range(3)]
    assert got == [base, base.with_name("12-00-00_lenet-2"), base.with_name("12-00-00_lenet-3")]


def test_default_run_dir_is_unique_even_within_one_second(config_dir, tmp_path, monkeypatch, capsys):
    """Another training already owns the default directory of every second around now:
    this one gets a directory of its own and leaves the other's files alone."""
    monkeypatch.chdir(tmp_path)
    _, first, explicit = R.new_config(config_dir, BASE)
    assert not explicit and first.name.endswith("_two_group") and first.parts[0] == "outputs"
    stamp = time.mktime(time.strptime(f"{first.parent.name} {first.name[:8]}", "%Y-%m-%d %H-%M-%S"))
    taken = []
    for s in range(-2, 90):
        t = time.localtime(stamp + s)
        d = tmp_path / "outputs" / time.strftime("%Y-%m-%d", t) / time.strftime("%H-%M-%S_two_group", t)
        (d / "checkpoints").mkdir(parents=True, exist_ok=True)
        (d / "checkpoints" / "last.pt").write_bytes(b"the other run")
        taken.append(d)
    assert train_main(BASE, config_dir=config_dir) == 0
    assert train_main(BASE, config_dir=config_dir) == 0
    out = capsys.readouterr().out
    dirs = [Path(line.split()[2]) for line in out.splitlines() if line.startswith("run dir:")]
    assert len(dirs) == 2 and dirs[0] != dirs[1]
    for d in dirs:
        assert d.name.endswith("_two_group-2") or d.name.endswith("_two_group-3"), d
        assert ckpt(tmp_path / d)["step"] == 20 and (tmp_path / d / "checkpoints" / "best.pt").is_file()
    assert all((d / "checkpoints" / "last.pt").read_bytes() == b"the other run" for d in taken)


# --------------------------------------------------------------------------- the lock
def test_a_second_training_into_a_locked_run_exits_2(train, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(*BASE, "trainer.interrupt_at=4", f"hydra.run.dir={run}") == 0
    capsys.readouterr()
    lock = R.RunLock(run)  # as a training in progress holds it
    try:
        assert train(f"resume={run}") == 2
        err = one_line_error(capsys)
        assert "is in use by another training (pid " in err and str(run) in err
        assert train(*BASE, f"hydra.run.dir={run}") == 2
        assert "is in use by another training" in one_line_error(capsys)
        assert ckpt(run)["step"] == 4  # untouched
    finally:
        lock.release()
    assert train(f"resume={run}") == 0
    assert ckpt(run)["step"] == 20


def test_lock_of_a_killed_process_is_free(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from zoo.engine.run import RunLock; "
         "RunLock(Path(sys.argv[1])); print('locked', flush=True); time.sleep(120)", str(run)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"pid {child.pid}"):
            R.RunLock(run)
    finally:
        child.kill()
        child.wait()
    R.RunLock(run).release()  # the kernel released the dead holder's lock


# --------------------------------------------------------------------------- train.log
def test_train_log_keeps_what_was_printed_and_grows_on_resume(train, tmp_path, capsys, at_call):
    run = tmp_path / "run"
    at_call(3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert train("model=two_group", "logger=none", "trainer.progress=true", f"hydra.run.dir={run}") == 143
    printed = capsys.readouterr()
    assert train(f"resume={run}", "trainer.progress=false") == 0
    log = (run / "train.log").read_text()
    assert log.count("=== ") == 2  # one header per start
    assert "run dir: " in log and "done: 20 steps" in log
    assert "interrupted by SIGTERM at step 3" in log and "interrupted by SIGTERM" in printed.err  # stderr
    assert "\r" not in log and "train:" in log  # the progress bar's last state, once
    assert log.index("interrupted by SIGTERM") < log.index("done: 20 steps")


def test_log_file_keeps_lines_as_a_terminal_shows_them(tmp_path):
    log = R._LogFile(tmp_path / "train.log")
    for chunk in ["step 1\n", "bar 10%\rbar 50%\n", "bar", " 0%", "\rbar 100%", "\n", "no newline"]:
        log.write(chunk)
    assert (tmp_path / "train.log").read_text() == "step 1\nbar 50%\nbar 100%\n"  # flushed per line
    log.close()
    assert (tmp_path / "train.log").read_text() == "step 1\nbar 50%\nbar 100%\nno newline\n"


# --------------------------------------------------------------------------- signals
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_exits_with_128_plus_signal(train, tmp_path, capsys, at_call, sig, status):
    run, full = tmp_path / "run", tmp_path / "full"
    common = [*BASE, "trainer.ckpt_every=100", "model.dropout=0.3"]
    assert train(*common, f"hydra.run.dir={full}") == 0
    at_call(5, lambda: os.kill(os.getpid(), sig))
    assert train(*common, f"hydra.run.dir={run}") == status
    err = capsys.readouterr().err
    assert (f"interrupted by {signal.Signals(sig).name} at step 5; continue with: "
            f"python train.py resume={run}") in err
    assert ckpt(run)["step"] == 5
    assert json.loads((run / "metrics.json").read_text())["interrupted"] is True
    assert train(f"resume={run}") == 0  # continues, and ends where a run never stopped ends
    a, b = ckpt(full)["model"], ckpt(run)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_from_outside_exits_143(config_dir, tmp_path):
    """A cluster's pre-emption, as it happens: another process sends SIGTERM."""
    run = tmp_path / "run"
    env = {**os.environ, "ZOO_CONFIG_DIR": str(config_dir), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *BASE, "trainer.max_steps=1000000",
                             "trainer.val_every=1", f"hydra.run.dir={run}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("step "):  # training (and its signal handlers) under way
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert f"continue with: python train.py resume={run}" in err
    assert "interrupted by SIGTERM at step " in err and "Traceback" not in err
    assert ckpt(run)["step"] >= 1


# --------------------------------------------------------------------------- crashes
def test_crash_reports_traceback_and_where_last_pt_is(train, tmp_path, capsys, at_call):
    run = tmp_path / "run"

    def boom():
        raise RuntimeError("boom in step 7")

    at_call(7, boom)
    assert train(*BASE, "trainer.ckpt_every=2", f"hydra.run.dir={run}") == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom in step 7" in err
    last = err.splitlines()[-1]
    assert last == (f"error: training crashed (RuntimeError: boom in step 7); the last completed step's "
                    f"state is in {run / 'checkpoints' / 'last.pt'} (step 6); continue with: "
                    f"python train.py resume={run}")
    assert ckpt(run)["step"] == 6
    log = (run / "train.log").read_text()
    assert "RuntimeError: boom in step 7" in log and last in log
    assert train(f"resume={run}") == 0
    assert ckpt(run)["step"] == 20


def test_crash_before_any_checkpoint(train, tmp_path, capsys, at_call):
    at_call(1, lambda: 1 / 0)
    assert train(*BASE, f"hydra.run.dir={tmp_path / 'run'}") == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: training crashed (ZeroDivisionError: division by zero)")
    # the state before the first step is saved, so the run can be continued from scratch
    assert "(step 0)" in last


# --------------------------------------------------------------------------- init_from
def test_init_from_another_models_checkpoint_is_an_error(train, tmp_path, capsys):
    p = tmp_path / "other.pt"
    C.save_atomic({"model": {"conv1.weight": torch.zeros(6, 1, 5, 5), "fc.bias": torch.zeros(10)}}, p)
    assert train(*BASE, f"init_from={p}", f"hydra.run.dir={tmp_path / 'run'}") == 2
    err = one_line_error(capsys)
    assert f"init_from {p} matches no weight of TwoGroupRegressor" in err and "conv1.weight" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_init_from_lists_shape_mismatches(train, tmp_path, capsys):
    good = TwoGroupRegressor(features=8).state_dict()
    p = tmp_path / "wide.pt"
    C.save_atomic({"model": {**good, "head.weight": torch.zeros(1, 32), "body.0.bias": torch.zeros(32)}}, p)
    assert train(*BASE, f"init_from={p}", f"hydra.run.dir={tmp_path / 'run'}") == 2
    err = one_line_error(capsys)
    assert "2 shape mismatch(es)" in err
    assert "head.weight (1, 32) in the checkpoint vs (1, 16) in the model" in err
    assert "body.0.bias (32) in the checkpoint vs (16) in the model" in err


def test_init_from_partial_match_loads_what_matches(train, tmp_path, capsys):
    torch.manual_seed(123)
    donor = TwoGroupRegressor(features=8).state_dict()
    p = tmp_path / "body.pt"
    C.save_atomic({"model": {k: v for k, v in donor.items() if k.startswith("body.")},
                   "extra": 1}, p)
    run = tmp_path / "run"
    assert train(*BASE, f"init_from={p}", "optim.lr=0.0", "trainer.max_steps=1",
                 f"hydra.run.dir={run}") == 0
    assert f"init_from {p}: 2 weights loaded, 2 missing keys, 0 unexpected keys" in capsys.readouterr().out
    got = ckpt(run)["model"]
    assert torch.equal(got["body.0.weight"], donor["body.0.weight"])
    assert not torch.equal(got["head.weight"], donor["head.weight"])


# --------------------------------------------------------------------------- checkpoints
def test_failed_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    p = tmp_path / "last.pt"
    C.save_atomic({"model": {"w": torch.ones(3)}, "step": 1}, p)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        C.save_atomic({"model": {"w": torch.zeros(3)}, "step": 2}, p)
    monkeypatch.undo()
    state = C.load(p)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    assert [f.name for f in tmp_path.iterdir()] == ["last.pt"]  # no temporary left


def test_process_killed_mid_save_keeps_the_previous_checkpoint(tmp_path):
    """SIGKILL while a large state is being written (after its bytes, before the rename)."""
    p = tmp_path / "last.pt"
    C.save_atomic({"model": {"w": torch.ones(3)}, "step": 1}, p)
    script = (
        "import os, sys, time, torch\n"
        "from zoo.engine import checkpoint as C\n"
        "def stuck(fd):\n"
        "    print('writing', flush=True); time.sleep(120)\n"
        "os.fsync = stuck\n"
        "C.save_atomic({'model': {'w': torch.zeros(4_000_000)}, 'step': 2}, sys.argv[1])\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(p)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "writing"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()
    leftovers = list(tmp_path.glob(".last.pt.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 16_000_000  # it was mid-save
    state = C.load(p)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))
    C.save_atomic({"model": {"w": torch.ones(3)}, "step": 3}, p)
    assert not list(tmp_path.glob(".last.pt.*.tmp"))  # the next save clears the dead one's file


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_checkpoint_is_one_line(tmp_path, damage):
    p = tmp_path / "last.pt"
    C.save_atomic({"model": {"w": torch.randn(1000)}, "step": 1}, p)
    raw = p.read_bytes()
    p.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": os.urandom(len(raw)), "empty": b""}[damage])
    with pytest.raises(CheckpointError) as e:
        C.load(p)
    msg = str(e.value)
    assert msg.startswith(f"cannot read checkpoint {p} (truncated or corrupt?)") and "\n" not in msg


@pytest.mark.slow
def test_torchrun_ranks_share_one_default_run_dir(config_dir, tmp_path):
    """Rank 0 claims and locks the default directory; every rank trains in it."""
    env = {**os.environ, "ZOO_CONFIG_DIR": str(config_dir), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "train.py"), *BASE, "trainer.max_steps=6"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 1 and runs[0].name.endswith("_two_group"), runs
    assert ckpt(runs[0])["step"] == 6
    log = (runs[0] / "train.log").read_text()
    assert log.count("run dir: ") == 1 and "processes=2" in log and "done: 6 steps" in log


def test_extra_state_of_another_size_fits():
    """A module's extra state (a tokenizer's table) is read back by the module, any size."""
    class Table(torch.nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.table, self.w = torch.arange(n), torch.nn.Parameter(torch.zeros(2))

        def get_extra_state(self):
            return self.table

        def set_extra_state(self, state):
            self.table = state

    src, dst = Table(7), Table(0)
    C.load_model_state(dst, src.state_dict(), "src")
    assert torch.equal(dst.table, torch.arange(7))
    with pytest.raises(CheckpointError, match=r"w \(3\) in the checkpoint vs \(2\) in the model"):
        C.load_model_state(dst, {**src.state_dict(), "w": torch.zeros(3)}, "src")


def test_a_crash_report_from_the_trainer_names_its_checkpoint(train, tmp_path, capsys, monkeypatch):
    """The trainer may raise its own report (``.checkpoint``, raised from the original):
    the CLI shows the original's traceback and the checkpoint the report names."""
    from zoo.engine.trainer import Trainer

    run = tmp_path / "run"
    saved = tmp_path / "saved.pt"

    class Report(Exception):
        checkpoint = str(saved)

    def fit(self):
        try:
            raise ValueError("inner failure")
        except ValueError as e:
            raise Report("crashed") from e

    C.save_atomic({"model": {}, "step": 11}, saved)
    monkeypatch.setattr(Trainer, "fit", fit)
    assert train(*BASE, f"hydra.run.dir={run}") == 1
    err = capsys.readouterr().err.strip()
    assert "ValueError: inner failure" in err and "Report" not in err
    assert err.splitlines()[-1].startswith(
        f"error: training crashed (ValueError: inner failure); the last completed step's state is in "
        f"{saved} (step 11)")
