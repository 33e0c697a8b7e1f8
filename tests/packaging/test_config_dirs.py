"""A person's own configs, in a folder outside the package (``--config-dir DIR`` or
$ZOO_CONFIG_DIR), add model/data/experiment choices next to the shipped ones, and go
through the same allow-list."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import one_line_error
from zoo.cli import train_main

QUICK = ["trainer.max_steps=2", "logger=none", "trainer.progress=false"]


@pytest.fixture
def mine(tmp_path) -> Path:
    """A folder with one model, one data and one experiment config of the person's own:
    zoo classes with settings the shipped configs do not use."""
    d = tmp_path / "mine"
    (d / "model").mkdir(parents=True)
    (d / "data").mkdir()
    (d / "experiment").mkdir()
    (d / "model" / "wide_mlp.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - /data: small_digits\n"
        "model:\n  _target_: zoo.models.classification.mlp.MLP\n"
        "  in_features: ${data.num_features}\n  num_classes: ${data.num_classes}\n"
        "  hidden: [48]\n  dropout: 0.0\n")
    (d / "data" / "small_digits.yaml").write_text(
        "_target_: zoo.data.digits.DigitsData\nbatch_size: 16\neval_batch_size: 50\n"
        "num_workers: 0\nnum_classes: 10\nchannels: 1\nimage_size: 4\nnum_features: null\n"
        "augment_shift: 0\nseed: 3\nval_fraction: 0.3\ntest_fraction: 0.1\n")
    (d / "experiment" / "short_sgd.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /optim: sgd\noptim:\n  lr: 0.05\n")
    return d


def _config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def test_config_dir_adds_a_model_and_a_data(mine, tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_CONFIG_DIR", raising=False)
    run = tmp_path / "run"
    assert train_main(["--config-dir", str(mine), "model=wide_mlp", "experiment=short_sgd",
                       *QUICK, f"hydra.run.dir={run}"]) == 0
    cfg = _config(run)
    assert cfg["model"]["hidden"] == [48] and cfg["model"]["in_features"] == 16  # 4x4 pixels
    assert cfg["data"]["batch_size"] == 16 and cfg["data"]["val_fraction"] == 0.3
    assert cfg["optim"]["_target_"] == "torch.optim.SGD" and cfg["optim"]["lr"] == 0.05
    assert cfg["run_info"]["choices"]["data"] == "small_digits"


def test_zoo_config_dir_adds_them_too_and_shipped_ones_stay(mine, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CONFIG_DIR", str(mine))
    run, shipped = tmp_path / "run", tmp_path / "shipped"
    assert train_main(["model=logistic_regression", "data=small_digits", *QUICK,
                       f"hydra.run.dir={run}"]) == 0
    assert _config(run)["data"]["image_size"] == 4
    assert train_main(["model=logistic_regression", *QUICK, f"hydra.run.dir={shipped}"]) == 0
    assert _config(shipped)["data"]["image_size"] == 8


def test_help_lists_the_added_configs(mine, capsys, monkeypatch):
    monkeypatch.delenv("ZOO_CONFIG_DIR", raising=False)
    assert train_main(["--help", "--config-dir", str(mine)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if "(from " in line}
    assert lines["model:"].split()[1] == "wide_mlp" and str(mine) in lines["model:"]
    assert "small_digits" in lines["data:"] and "short_sgd" in lines["experiment:"]
    shipped = next(line for line in out.splitlines() if line.startswith("model:") and "(from" not in line)
    assert "lenet" in shipped and "wide_mlp" not in shipped


def test_an_added_config_passes_the_allow_list(mine, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ZOO_CONFIG_DIR", raising=False)
    (mine / "model" / "evil.yaml").write_text("_target_: os.system\ncommand: touch pwned\n")
    run = tmp_path / "run"
    assert train_main(["--config-dir", str(mine), "model=evil", *QUICK,
                       f"hydra.run.dir={run}"]) == 2
    assert "refusing to build 'os.system'" in one_line_error(capsys)
    assert not (run / "config.yaml").exists()


@pytest.mark.parametrize("make, args, expected", [
    (lambda d: (d / "model" / "lenet.yaml").write_text("_target_: x.Y\n"), ["model=lenet"],
     "model/lenet.yaml has the name of a shipped config"),
    (None, ["--config-dir", "/no/such/folder"], "config dir /no/such/folder does not exist"),
    (None, ["--config-dir"], "--config-dir needs a folder"),
    (None, ["model=wide_mlpp"], "unknown model 'wide_mlpp'; valid choices: "),
])
def test_config_dir_mistakes_are_one_line(mine, tmp_path, capsys, monkeypatch, make, args,
                                          expected):
    monkeypatch.delenv("ZOO_CONFIG_DIR", raising=False)
    if make:
        make(mine)
    extra = args if args and args[0] == "--config-dir" else ["--config-dir", str(mine), *args]
    assert train_main([*extra, *QUICK, f"hydra.run.dir={tmp_path / 'never'}"]) == 2
    assert expected in one_line_error(capsys)


def test_a_folder_with_its_own_train_yaml_replaces_the_shipped_tree(config_dir, tmp_path,
                                                                    monkeypatch):
    """$ZOO_CONFIG_DIR naming a whole config tree (a fork's, the tests') keeps its meaning:
    that tree instead of the shipped one, so its test-only models compose."""
    monkeypatch.setenv("ZOO_CONFIG_DIR", str(config_dir))
    run = tmp_path / "run"
    assert train_main(["model=two_group", *QUICK, f"hydra.run.dir={run}"]) == 0
    assert (run / "metrics.json").is_file()
