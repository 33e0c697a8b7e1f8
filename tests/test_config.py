"""Configs checked when composed: the target allow-list, nested `_target_` nodes, the
schema of trainer/optim/sched/data-loader keys and the seed (one line naming the key,
the value and what is allowed, exit 2, before training starts), the debug profile
applied last, `--cfg job`, derived data metadata, and a model paired with data it
cannot read."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from torch import nn

from tests.helpers import one_line_error
from zoo.cli import evaluate_main, train_main
from zoo.engine.config import build, check_targets, compose, locate
from zoo.errors import UserError


# --------------------------------------------------------------------------- allow-list
@pytest.mark.parametrize("target", [
    "torch.optim.AdamW", "torch.optim.SGD", "torch.optim.lr_scheduler.StepLR",
    "zoo.models.classification.lenet.LeNet5", "zoo.data.digits.DigitsData",
    "zoo.metrics.classification.ClassificationEvaluator",
])
def test_allowed_targets(target):
    assert isinstance(locate(target), type)


@pytest.mark.parametrize("target", [
    "torch.hub.load", "torch.save", "torch.load", "torch.utils.collect_env.run",
    "torch.utils.cpp_extension.load_inline", "torch.nn.Linear", "torchvision.models.resnet18",
    "os.system", "builtins.eval", "subprocess.Popen",
    "torch.optim.Optimizer.zero_grad",        # a method, not a class
    "torch.optim.lr_scheduler.math",          # a module re-exported in an allowed module
    "zoo.engine.trainer.DataLoader",          # a class a zoo module imports: not buildable
    "zoo.engine.checkpoint.torch",            # a module inside zoo
    "zoo.data.detection.Path", "zoo.models.base.nn",
    "torch.optim", "zoo", "", "  torch.optim.SGD", "torch.optim.SGD; rm -rf /",
])
def test_refused_targets(target):
    with pytest.raises(UserError, match="refusing|cannot find"):
        locate(target)


def test_refused_target_module_is_never_imported():
    """The module name is checked before importing it: importing can run code."""
    sys.modules.pop("this", None)  # `import this` prints the Zen of Python
    with pytest.raises(UserError, match="refusing"):
        locate("this.s")
    assert "this" not in sys.modules


def test_non_string_target_is_refused():
    with pytest.raises(UserError, match="refusing"):
        locate(["torch.save"])


def test_targets_checked_at_any_depth_and_in_lists():
    ok = {"_target_": "zoo.models.classification.lenet.LeNet5"}
    check_targets(OmegaConf.create({"model": ok, "hydra": {"x": {"_target_": "os.system"}}}))
    for bad in ({"model": {**ok, "a": {"b": {"_target_": "torch.save"}}}},
                {"model": {**ok, "layers": [{"x": 1}, [{"_target_": "torch.hub.load"}]]}},
                {"data": {"_target_": "torch.utils.collect_env.run"}}):
        with pytest.raises(UserError, match="refusing"):
            check_targets(OmegaConf.create(bad))


# --------------------------------------------------------------------------- nested nodes
@pytest.fixture
def nested_module(monkeypatch):
    """A zoo module with a model that takes injected sub-modules (as a backbone would)."""
    from zoo.models.base import ZooModel
    from zoo.registry import buildable

    mod = types.ModuleType("zoo._nested_test")
    order: list[str] = []

    @buildable
    class Encoder(nn.Module):
        def __init__(self, dim: int, inner: nn.Module | None = None) -> None:
            super().__init__()
            order.append(f"Encoder({dim})")
            self.inner = inner
            self.lin = nn.Linear(dim, dim)

    class Net(ZooModel):
        def __init__(self, encoder: nn.Module, heads: list, options: dict) -> None:
            super().__init__()
            order.append("Net")
            self.encoder, self.heads, self.options = encoder, heads, options

    mod.Encoder, mod.Net, mod.order = Encoder, Net, order
    monkeypatch.setitem(sys.modules, "zoo._nested_test", mod)
    return mod


def test_nested_targets_build_sub_modules_children_first(nested_module):
    cfg = OmegaConf.create({
        "_target_": "zoo._nested_test.Net",
        "encoder": {"_target_": "zoo._nested_test.Encoder", "dim": 4,
                    "inner": {"_target_": "zoo._nested_test.Encoder", "dim": 2}},
        "heads": [{"_target_": "zoo._nested_test.Encoder", "dim": 3}, {"plain": [1, 2]}],
        "options": {"depth": 2, "sizes": [1, 2]},
    })
    net = build(cfg, "model")
    assert isinstance(net.encoder, nested_module.Encoder) and isinstance(net.encoder.inner, nn.Module)
    assert isinstance(net.heads[0], nn.Module) and net.heads[1] == {"plain": [1, 2]}
    assert net.options == {"depth": 2, "sizes": [1, 2]} and type(net.options) is dict
    assert nested_module.order == ["Encoder(2)", "Encoder(4)", "Encoder(3)", "Net"]
    # The sub-module is registered: its weights are the model's.
    assert any(n.startswith("encoder.inner.lin") for n, _ in net.named_parameters())


def test_nested_targets_go_through_the_allow_list(nested_module, tmp_path):
    victim = tmp_path / "v"
    for bad in ({"_target_": "torch.save", "obj": 1, "f": str(victim)},
                {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2}):
        cfg = {"_target_": "zoo._nested_test.Net", "encoder": bad, "heads": [], "options": {}}
        with pytest.raises(UserError, match="refusing"):
            build(cfg, "model")
        with pytest.raises(UserError, match="refusing"):
            build({**cfg, "encoder": None, "heads": [bad]}, "model")
    assert not victim.exists() and nested_module.order == []


# --------------------------------------------------------------------------- schema
SCHEMA_MISTAKES = [
    ("trainer.max_steps=abc", "trainer.max_steps=abc: expected an integer >= 1, or null"),
    ("optim.lr=-1", "optim.lr=-1: expected a number >= 0"),
    ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1: expected a number >= 0"),
    ("optim.betas=[0.9,1.0]", "optim.betas=[0.9, 1.0]: expected a list of 2 numbers, each in [0, 1)"),
    ("optim.betas=[0.9]", "optim.betas=[0.9]"),
    ("data.batch_size=0", "data.batch_size=0: expected an integer >= 1"),
    ("data.eval_batch_size=-2", "data.eval_batch_size=-2: expected an integer >= 1, or null"),
    ("data.num_workers=-1", "data.num_workers=-1: expected an integer >= 0"),
    ("seed=abc", "seed=abc: expected an integer"),
    ("trainer.mode=MAX", "trainer.mode=MAX: expected one of max, min"),
    ("trainer.val_every=0", "trainer.val_every=0: expected an integer >= 1, or null"),
    ("trainer.accumulate=0", "trainer.accumulate=0: expected an integer >= 1"),
    ("trainer.max_steps=-5", "trainer.max_steps=-5: expected an integer >= 1"),
    ("trainer.max_steps=2.5", "trainer.max_steps=2.5: expected an integer >= 1"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0: expected an integer >= 1"),
    ("trainer.on_nonfinite=ignore", "trainer.on_nonfinite=ignore: expected one of stop, skip"),
    ("trainer.deterministic=maybe", "trainer.deterministic=maybe: expected true or false"),
    ("trainer.ema=1.5", "trainer.ema=1.5: expected a number in (0, 1), or null"),
    ("trainer.amp=fp8", "trainer.amp=fp8: expected one of auto, off, bf16, fp16"),
    ("sched.warmup_steps=-1", "sched.warmup_steps=-1: expected an integer >= 0"),
    ("sched.warmup_start_factor=2", "sched.warmup_start_factor=2: expected a number in [0, 1]"),
    ("trainer.max_step=5", "no key 'trainer.max_step' in the config (did you mean 'trainer.max_steps'?)"),
    ("+trainer.max_step=5", "unknown key 'trainer.max_step' (did you mean 'trainer.max_steps'?)"),
    ("+trainer.patiense=3", "did you mean 'trainer.patience'?"),
    ("+optim.lrr=0.1", "unknown key 'optim.lrr' for torch.optim.AdamW (did you mean 'optim.lr'?)"),
    ("+optim.groups.main.lr=-1", "optim.groups.main.lr=-1: expected a number >= 0"),
]


@pytest.mark.parametrize("override, expected", SCHEMA_MISTAKES)
def test_schema_mistakes_are_one_line_before_training(config_dir, capsys, tmp_path, override, expected):
    run = tmp_path / "run"
    assert train_main([override, f"hydra.run.dir={run}"], config_dir=config_dir) == 2
    assert expected in one_line_error(capsys)
    assert not run.exists()


def test_max_steps_and_max_epochs_both_null(config_dir, capsys, tmp_path):
    assert train_main(["trainer.max_epochs=null", f"hydra.run.dir={tmp_path}/r"],
                      config_dir=config_dir) == 2
    assert "trainer.max_steps and trainer.max_epochs are both null" in one_line_error(capsys)


def test_valid_values_pass(config_dir):
    cfg = compose(config_dir, "train", [
        "trainer.mode=min", "trainer.val_every=1", "trainer.accumulate=2", "trainer.max_steps=7",
        "trainer.on_nonfinite=skip", "trainer.deterministic=true", "trainer.ema=0.99",
        "trainer.device=cpu", "optim.lr=0", "data.num_workers=0",
        "seed=123", "trainer.clip_grad_norm=1", "trainer.max_time=0.5", "optim=sgd",
        "optim.momentum=0"])
    assert cfg.trainer.max_steps == 7 and cfg.optim.momentum == 0
    assert compose(config_dir, "train", ["optim.betas=[0.0,0.5]"]).optim.betas == [0.0, 0.5]


def test_run_config_is_validated_at_evaluate_and_resume(config_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(["trainer=debug", "logger=none", f"hydra.run.dir={run}"],
                      config_dir=config_dir) == 0
    capsys.readouterr()
    assert train_main([f"resume={run}", "trainer.accumulate=0"], config_dir=config_dir) == 2
    assert "trainer.accumulate=0: expected an integer >= 1" in one_line_error(capsys)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["trainer"]["mode"] = "MAX"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    for command in (lambda: evaluate_main([f"run={run}"]),
                    lambda: train_main([f"resume={run}"], config_dir=config_dir)):
        assert command() == 2
        assert "trainer.mode=MAX: expected one of max, min" in one_line_error(capsys)


def test_run_config_of_older_runs_still_loads(config_dir, tmp_path, capsys):
    """Run directories written before the debug profile moved keep `trainer.apply_last`."""
    run = tmp_path / "run"
    assert train_main(["trainer=debug", "logger=none", f"hydra.run.dir={run}"],
                      config_dir=config_dir) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["trainer"]["apply_last"] = True
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert evaluate_main([f"run={run}", "split=val"]) == 0


# --------------------------------------------------------------------------- debug profile
@pytest.mark.parametrize("model", ["yolo", "lenet", "gpt"])
def test_debug_profile_wins_over_the_model_config(config_dir, model):
    base = compose(config_dir, "train", [f"model={model}"])
    assert base.trainer.max_epochs is not None or base.trainer.max_steps > 4  # the model's own length
    cfg = compose(config_dir, "train", [f"model={model}", "trainer=debug"])
    assert cfg.trainer.max_steps == 4 and cfg.trainer.max_epochs is None
    assert cfg.trainer.val_every_steps == 2 and cfg.trainer.progress is False
    assert cfg.trainer.monitor == base.trainer.monitor  # the model's other trainer keys stay
    # The command line still wins over the profile.
    cfg = compose(config_dir, "train", [f"model={model}", "trainer=debug", "trainer.max_steps=2"])
    assert cfg.trainer.max_steps == 2
    assert compose(config_dir, "train", [f"model={model}", "debug=debug"]).trainer.max_steps == 4


def test_debug_run_of_a_model_with_epochs_takes_four_steps(train, tmp_path):
    run = tmp_path / "run"
    assert train("model=lenet", "trainer=debug", "logger=none", f"hydra.run.dir={run}") == 0
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4


# --------------------------------------------------------------------------- --cfg
def test_cfg_job_prints_the_config_without_training(config_dir, capsys, tmp_path):
    run = tmp_path / "run"
    assert train_main(["--cfg", "job", "model=lenet", "trainer=debug", f"hydra.run.dir={run}"],
                      config_dir=config_dir) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert "hydra" not in printed and printed["trainer"]["max_steps"] == 4
    assert printed["model"]["in_channels"] == "${data.channels}"
    assert not run.exists()
    assert train_main(["--cfg", "job", "--resolve", "model=lenet"], config_dir=config_dir) == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["in_channels"] == 1
    assert train_main(["--cfg", "all", "model=lenet"], config_dir=config_dir) == 0
    assert "hydra" in yaml.safe_load(capsys.readouterr().out)
    assert train_main(["--cfg", "jobs"], config_dir=config_dir) == 2
    assert "--cfg takes job, all or hydra" in one_line_error(capsys)
    assert train_main(["--cfg", "job", "trainer.mode=MAX"], config_dir=config_dir) == 2
    assert "trainer.mode=MAX" in one_line_error(capsys)


# --------------------------------------------------------------------------- data metadata
def test_num_features_is_derived(config_dir, capsys, tmp_path):
    def features(*ov):
        cfg = compose(config_dir, "train", list(ov))
        del cfg["hydra"]
        return OmegaConf.to_container(cfg, resolve=True)

    assert features("model=logistic_regression")["data"]["num_features"] == 64
    c = features("model=logistic_regression", "data.image_size=16")
    assert c["data"]["num_features"] == 256 and c["model"]["in_features"] == 256
    assert features("model=mlp", "data=digits", "data.image_size=4")["model"]["in_features"] == 16
    assert train_main(["data.num_features=100", f"hydra.run.dir={tmp_path}/r"],
                      config_dir=config_dir) == 2
    assert "data.num_features=100 but data.channels * data.image_size^2 = 1 * 8^2 = 64" \
        in one_line_error(capsys)


@pytest.mark.parametrize("model, data, key", [
    ("lenet", "reverse", "data.num_classes"),
    ("logistic_regression", "shapes", "data.num_features"),
    ("gpt", "digits", "data.vocab_size"),
])
def test_model_paired_with_data_it_cannot_read_names_both(config_dir, capsys, tmp_path, model, data, key):
    assert train_main([f"model={model}", f"data={data}", f"hydra.run.dir={tmp_path}/r"],
                      config_dir=config_dir) == 2
    err = one_line_error(capsys)
    assert f"model '{model}' needs {key}" in err and f"data '{data}' does not provide" in err


def test_image_folder_needs_only_its_root(config_dir, tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    for split in ("train", "val"):
        for k, cls in enumerate(("cat", "dog", "eel")):
            (root / split / cls).mkdir(parents=True)
            Image.new("RGB", (10, 12), (k * 80, 0, 0)).save(root / split / cls / "a.png")
    run = tmp_path / "run"
    assert train_main(["model=mlp", "data=image_folder", f"data.root={root}", "data.image_size=4",
                       "trainer=debug", "logger=none", f"hydra.run.dir={run}"],
                      config_dir=config_dir) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["num_classes"] == 3 and saved["data"]["class_names"] == ["cat", "dog", "eel"]
    assert saved["data"]["num_features"] == 48 and saved["model"]["in_features"] == 48
    with pytest.raises(UserError, match="has 3 classes but data.num_classes=2; set data.num_classes=3"):
        compose(config_dir, "train", ["model=mlp", "data=image_folder", f"data.root={root}",
                                      "data.num_classes=2"])
    shutil.rmtree(root / "val" / "eel")
    (root / "val" / "emu").mkdir()
    Image.new("RGB", (4, 4)).save(root / "val" / "emu" / "b.png")
    from zoo.data.vision import ImageFolderData
    from zoo.errors import DataError

    with pytest.raises(DataError, match="class folders not in train: emu"):
        ImageFolderData(root=str(root))  # found when the data is built, not at validation
    assert Path(run / "checkpoints" / "last.pt").is_file()
