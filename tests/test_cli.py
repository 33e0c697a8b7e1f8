"""A person's mistakes end in one clear line and exit status 2, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import one_line_error
from zoo.cli import evaluate_main, predict_main, train_main

ROOT = Path(__file__).resolve().parents[1]




@pytest.mark.parametrize("args, expected", [
    (["model=no_such_model"], "unknown model 'no_such_model'; valid choices: "),
    (["data=no_such_data"], "unknown data 'no_such_data'; valid choices: "),
    (["optim=rmsprop"], "unknown optim 'rmsprop'; valid choices: adam, adamw, sgd"),
    (["trainer.no_such_key=1"], "bad override: no key 'trainer.no_such_key'"),
    (["trainer.max_steps"], "bad override 'trainer.max_steps': expected key=value"),
    (["--epochs", "3"], "unknown option '--epochs'"),
    (["resume=/no/such/run"], "resume: run directory does not exist: /no/such/run"),
    (["trainer.device=tpu"], "unknown device 'tpu'"),
])
def test_train_mistakes(config_dir, capsys, args, expected):
    assert train_main(args + ["hydra.run.dir=/tmp/zoo-never-created"], config_dir=config_dir) == 2
    err = one_line_error(capsys)
    assert expected in err
    if "valid choices" in expected and "model" in expected:
        assert "lenet" in err and "logistic_regression" in err
    assert not Path("/tmp/zoo-never-created/checkpoints").exists()


def test_missing_dataset_folder(config_dir, capsys, tmp_path):
    missing = tmp_path / "nowhere"
    assert train_main(["model=lenet", "data=mnist", f"data.root={missing}",
                       f"hydra.run.dir={tmp_path / 'run'}"], config_dir=config_dir) == 2
    err = one_line_error(capsys)
    assert str(missing) in err


def test_existing_run_dir_is_not_overwritten(train, capsys, tmp_path):
    run = tmp_path / "run"
    assert train("model=two_group", "trainer.max_steps=2", "logger=none", "trainer.progress=false",
                 f"hydra.run.dir={run}") == 0
    capsys.readouterr()
    assert train("model=two_group", f"hydra.run.dir={run}") == 2
    assert "already holds a run" in one_line_error(capsys)


@pytest.mark.parametrize("main, args, expected", [
    (evaluate_main, ["run=/no/such/run"], "run directory does not exist: /no/such/run"),
    (evaluate_main, ["ckpt=/no/such.pt"], "checkpoint not found: /no/such.pt"),
    (evaluate_main, ["run"], "bad argument 'run': expected key=value"),
    (evaluate_main, ["run=/tmp", "frobnicate=1"], "unknown option 'frobnicate'"),
    (evaluate_main, ["run=/tmp"], "/tmp is not a run directory (no config.yaml)"),
    (predict_main, ["run=/no/such/run"], "run directory does not exist"),
])
def test_evaluate_and_predict_mistakes(capsys, main, args, expected):
    assert main(args) == 2
    assert expected in one_line_error(capsys)


def test_help_lists_models_and_datasets(config_dir, capsys):
    assert train_main(["--help"], config_dir=config_dir) == 0
    out = capsys.readouterr().out
    assert "model:" in out and "lenet" in out and "data:" in out and "digits" in out


def test_help_says_what_a_run_writes_and_what_exit_statuses_mean(config_dir, capsys):
    assert train_main(["--help"], config_dir=config_dir) == 0
    out = capsys.readouterr().out
    for word in ("config.yaml", "last.pt", "train.log", ".lock", "resume=RUN_DIR", "run_info.resumes",
                 "130 / 143", "1 stopped", "2 a mistake"):
        assert word in out, word


def test_entry_script_exit_status():
    """The real script, as a person runs it: status 2 and one line on stderr."""
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "model=nope"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'nope'")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_multirun_sweep(config_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert train_main(["-m", "model=two_group", "optim.lr=0.01,0.1", "trainer.max_steps=2",
                       "logger=none", "trainer.progress=false", f"hydra.sweep.dir={sweep}"],
                      config_dir=config_dir) == 0
    lrs = sorted(float(__import__("yaml").safe_load((sweep / str(i) / "config.yaml").read_text())
                       ["optim"]["lr"]) for i in range(2))
    assert lrs == [0.01, 0.1]
