"""``train.py -m`` / ``solve.py -m`` run through Hydra's multirun: its sweepers and
launchers (basic, joblib, submitit_local; Optuna), one zoo run directory per job, one-line
mistakes, and a sweep that goes on past a failed job."""

from __future__ import annotations

import importlib.util
import json
import math
import pickle
from pathlib import Path

import pytest
import yaml

from tests.helpers import one_line_error
from zoo.cli import JobOutcome, train_main

TOY = ["model=two_group", "trainer.max_steps=2", "logger=none", "trainer.progress=false"]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:      # the parent package (hydra_plugins) is not installed
        return False


needs_joblib = pytest.mark.skipif(not _has("hydra_plugins.hydra_joblib_launcher"),
                                  reason="pip install 'zoo[cluster]'")
needs_submitit = pytest.mark.skipif(not _has("hydra_plugins.hydra_submitit_launcher"),
                                    reason="pip install 'zoo[cluster]'")
needs_optuna = pytest.mark.skipif(not _has("hydra_plugins.hydra_optuna_sweeper"),
                                  reason="pip install 'zoo[cluster]'")


def _lr(run: Path) -> float:
    return float(yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"])


def test_each_job_is_one_zoo_run_directory(config_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert train_main(["-m", *TOY, "optim.lr=0.01,0.1", f"hydra.sweep.dir={sweep}"],
                      config_dir=config_dir) == 0
    out = capsys.readouterr().out
    assert f"sweep done: 2/2 runs succeeded in {sweep}" in out
    assert "[job 0] model=two_group" in out and "[job 1]" in out
    for i, lr in enumerate([0.01, 0.1]):
        run = sweep / str(i)
        assert _lr(run) == lr and (run / "metrics.json").is_file()
        assert (run / "checkpoints" / "last.pt").is_file()
        assert not (run / ".hydra").exists()  # the run directory is the zoo's alone
        info = yaml.safe_load((run / "config.yaml").read_text())["run_info"]
        assert f"optim.lr={lr}" in info["overrides"]
    assert (sweep / "multirun.yaml").is_file()  # Hydra's record of the sweep


def test_a_failed_job_does_not_stop_the_sweep(config_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert train_main(["-m", *TOY, "trainer.accumulate=0,1", f"hydra.sweep.dir={sweep}"],
                      config_dir=config_dir) == 1
    captured = capsys.readouterr()
    assert "sweep done: 1/2 runs succeeded" in captured.out
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "accumulate" in errors[0]
    assert not (sweep / "0" / "metrics.json").exists() and (sweep / "1" / "metrics.json").is_file()


@pytest.mark.parametrize("args, expected", [
    (["model=two_group,nope"], "unknown model 'nope'; valid choices: "),
    (["hydra/launcher=nope"], "bad sweep: In 'hydra/config': Could not find 'hydra/launcher/nope'"),
    (["optim.lrr=1,2"], "bad sweep: bad override: no key 'optim.lrr'"),
    (["--verbose"], "unknown option '--verbose'"),
])
def test_sweep_mistakes_are_one_line(config_dir, tmp_path, capsys, args, expected):
    sweep = tmp_path / "sweep"
    assert train_main(["-m", *TOY, *args, f"hydra.sweep.dir={sweep}"], config_dir=config_dir) == 2
    assert expected in one_line_error(capsys)
    assert not (sweep / "0" / "metrics.json").exists()


@pytest.mark.parametrize("missing", ["plugin", "package"])
def test_a_missing_launcher_plugin_names_the_extra(config_dir, tmp_path, capsys, monkeypatch, missing):
    real = importlib.util.find_spec

    def find_spec(name, *a):
        if not name.startswith("hydra_plugins.hydra_joblib"):
            return real(name, *a)
        if missing == "package":          # no hydra_plugins at all: find_spec raises
            raise ModuleNotFoundError("No module named 'hydra_plugins'")
        return None

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert train_main(["-m", *TOY, "hydra/launcher=joblib", f"hydra.sweep.dir={tmp_path}/s"],
                      config_dir=config_dir) == 2
    assert ("hydra/launcher=joblib needs the hydra-joblib-launcher plugin: "
            "pip install 'zoo[cluster]'") in one_line_error(capsys)


def test_job_outcome_is_the_objective_and_survives_pickling():
    o = pickle.loads(pickle.dumps(JobOutcome(0.25, 0, "multirun/x/0")))
    assert isinstance(o, JobOutcome) and float(o) == 0.25 and (o.status, o.run_dir) == (0, "multirun/x/0")
    assert math.isnan(JobOutcome(math.nan, 2))


@pytest.mark.slow
@needs_joblib
def test_joblib_runs_jobs_in_parallel_processes(config_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert train_main(["-m", *TOY, "optim.lr=0.01,0.1", "hydra/launcher=joblib",
                       "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"],
                      config_dir=config_dir) == 0
    assert "sweep done: 2/2 runs succeeded" in capsys.readouterr().out
    assert [_lr(sweep / str(i)) for i in range(2)] == [0.01, 0.1]
    assert all((sweep / str(i) / "metrics.json").is_file() for i in range(2))


@pytest.mark.slow
@needs_submitit
def test_submitit_local_runs_a_job(config_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert train_main(["-m", *TOY, "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}"],
                      config_dir=config_dir) == 0
    assert "sweep done: 1/1 runs succeeded" in capsys.readouterr().out
    assert (sweep / "0" / "metrics.json").is_file() and (sweep / "0" / "config.yaml").is_file()
    assert (sweep / ".submitit").is_dir()  # submitit's own logs, beside the runs


@pytest.mark.slow
@needs_optuna
def test_optuna_recipe_maximises_trainer_monitor(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert train_main(["-m", "experiment=optuna_lr", "model=logistic_regression",
                       "trainer.max_steps=3", "logger=none", "trainer.progress=false",
                       "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"]) == 0
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in range(2)]
    assert all(v["monitor"] == "accuracy" for v in values)
    bests = [v["best_value"] for v in values]
    assert best["best_value"] == pytest.approx(max(bests))
    assert set(best["best_params"]) == {"optim.lr", "optim.weight_decay"}
