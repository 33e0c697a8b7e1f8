"""Resume rules: the run's own command line is accepted again; a change either takes
effect exactly (and config.yaml records it) or is refused with one line; a finished run
says so; another model's last.pt is one line."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import one_line_error
from zoo.engine import run as R
from zoo.errors import UserError

BASE = ["model=two_group", "trainer.progress=false", "logger=none"]


def ckpt(run: Path, name: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / name, weights_only=True)


def config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())




@pytest.fixture
def stopped(train, tmp_path, capsys):
    """A run stopped at step 5 of 20, started with a command line of its own."""
    run = tmp_path / "run"
    line = [*BASE, "trainer.max_steps=20", "optim.lr=0.01", "trainer.interrupt_at=5", f"hydra.run.dir={run}"]
    assert train(*line) == 0
    capsys.readouterr()
    return run, line


def test_the_same_command_line_with_resume_is_accepted(train, stopped):
    run, line = stopped
    assert train(*line, f"resume={run}") == 0
    assert ckpt(run)["step"] == 20
    assert config(run)["run_info"]["resumes"][0]["overrides"] == []  # nothing changed


@pytest.mark.parametrize("override, expected", [
    ("model=lenet", "resume: 'model=lenet' differs from the run's model (two_group)"),
    ("data=digits", "resume: 'data=digits' differs from the run's data (toy_regression)"),
    ("optim=sgd", "resume: 'optim=sgd' differs from the run's optim (adamw)"),
    ("optim.lr=0.5", "resume: optim.lr cannot change when a run continues (0.01 -> 0.5): "
                     "the restored optimizer keeps its saved state and rates"),
    ("sched.warmup_steps=3", "resume: sched.warmup_steps cannot change"),
    ("data.n=512", "resume: data.n cannot change when a run continues (256 -> 512): "
                   "the batches drawn so far came from the old value"),
    ("data.batch_size=8", "resume: data.batch_size cannot change"),
    ("model.dropout=0.5", "resume: model.dropout cannot change when a run continues (0.1 -> 0.5): "
                        "the weights were built and trained with the old value"),
    ("seed=1", "resume: seed cannot change"),
    ("trainer.accumulate=2", "resume: trainer.accumulate cannot change"),
    ("trainer.ema=0.9", "resume: trainer.ema cannot change"),
    ("+model.extra=1", "resume: model.extra cannot change"),
    ("trainer.no_such_key=1", "bad override 'trainer.no_such_key=1': key 'trainer.no_such_key' is not in the run's config"),
    ("~trainer.ema", "resume: '~trainer.ema' cannot remove a key"),
    ("trainer.max_steps=abc", "trainer.max_steps=abc: expected an integer >= 1, or null"),
    ("trainer.max_steps=-5", "trainer.max_steps=-5: expected an integer >= 1, or null"),
    ("trainer.max_steps=2.5", "trainer.max_steps=2.5: expected an integer"),
    ("trainer.progress=maybe", "trainer.progress=maybe: expected true or false"),
    ("trainer.on_nonfinite=ignore", "trainer.on_nonfinite=ignore: expected one of stop, skip"),
    ("data.num_workers=-1", "data.num_workers=-1: expected an integer >= 0"),
    ("hydra.run.dir=/tmp/elsewhere", "resume: hydra.run.dir=/tmp/elsewhere is not the run being resumed"),
])
def test_a_change_that_cannot_take_effect_is_refused(train, stopped, capsys, override, expected):
    run, _ = stopped
    before = (run / "config.yaml").read_text()
    assert train(f"resume={run}", override) == 2
    err = one_line_error(capsys)
    assert expected in err, err
    assert (run / "config.yaml").read_text() == before  # nothing recorded, nothing trained
    assert ckpt(run)["step"] == 5


def test_refusal_names_what_may_change(train, stopped, capsys):
    run, _ = stopped
    assert train(f"resume={run}", "optim.lr=0.5") == 2
    err = one_line_error(capsys)
    assert "keys that may change: trainer.max_steps" in err and "logger.*" in err
    assert "init_from=RUN/checkpoints/last.pt" in err


def test_allowed_changes_take_effect_and_are_recorded(train, stopped):
    run, _ = stopped
    assert train(f"resume={run}", "trainer.max_steps=30", "data.eval_batch_size=7",
                 "trainer.val_every=10", "model=two_group") == 0
    assert ckpt(run)["step"] == 30
    cfg = config(run)
    assert cfg["trainer"]["max_steps"] == 30 and cfg["data"]["eval_batch_size"] == 7
    history = cfg["run_info"]["resumes"]
    assert len(history) == 1 and history[0]["time"]
    assert history[0]["overrides"] == ["data.eval_batch_size=7", "trainer.max_steps=30",
                                       "trainer.val_every=10"]
    # the lr schedule ran to the new length: cosine decayed to 0 at step 30
    lr = ckpt(run)["optimizers"]["first"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(0.0, abs=1e-12)
    m = json.loads((run / "metrics.json").read_text())
    assert m["steps"] == 30 and m["interrupted"] is False


def test_resuming_a_finished_run_says_so(train, stopped, capsys):
    run, _ = stopped
    assert train(f"resume={run}") == 0
    capsys.readouterr()
    before = (run / "checkpoints" / "last.pt").read_bytes()
    assert train(f"resume={run}") == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"{run} already finished at step 20; nothing to do (a larger trainer.max_steps "
                   "or trainer.max_epochs trains it further)")
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    # ... and a larger max_steps continues it
    assert train(f"resume={run}", "trainer.max_steps=24") == 0
    assert ckpt(run)["step"] == 24
    assert [h["overrides"] for h in config(run)["run_info"]["resumes"]] == [[], ["trainer.max_steps=24"]]


def test_resuming_with_another_models_checkpoint_is_one_line(train, tmp_path, capsys):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert train(*BASE, "trainer.interrupt_at=3", f"hydra.run.dir={ours}") == 0
    assert train("model=logistic_regression", "trainer.progress=false", "logger=none",
                 "trainer.max_steps=2", f"hydra.run.dir={theirs}") == 0
    capsys.readouterr()
    shutil.copy(theirs / "checkpoints" / "last.pt", ours / "checkpoints" / "last.pt")
    assert train(f"resume={ours}") == 2
    err = one_line_error(capsys)
    assert (f"checkpoint {ours / 'checkpoints' / 'last.pt'} does not fit the run's model "
            "TwoGroupRegressor (another model's checkpoint?)") in err
    assert "missing: body.0.weight" in err


def test_library_resume(config_dir, stopped):
    run, _ = stopped
    changed = R.resume_config(run, ["optim.lr=0.5"])
    with pytest.raises(UserError, match="optim.lr cannot change"):
        R.train(changed, run, resume=True)
    summary = R.train(None, run, resume=True)
    assert summary["steps"] == 20 and R.exit_status(summary) == 0
    assert R.train(None, run, resume=True)["already_finished"] is True


def test_moving_training_images_into_validation_mid_run_is_refused(train, tmp_path, capsys):
    run = tmp_path / "digits"
    assert train("model=logistic_regression", "trainer.progress=false", "logger=none",
                 "trainer.max_steps=4", "trainer.interrupt_at=2", f"hydra.run.dir={run}") == 0
    capsys.readouterr()
    assert train(f"resume={run}", "data.val_fraction=0.5") == 2
    assert "resume: data.val_fraction cannot change when a run continues (0.2 -> 0.5)" in one_line_error(capsys)
    assert train(f"resume={run}", "model=logistic_regression", "data=digits", "experiment=null") == 0
    assert ckpt(run)["step"] == 4
