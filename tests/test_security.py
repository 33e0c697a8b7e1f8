"""A run directory someone else made cannot run code: each payload below, written into
a real run's config.yaml, is refused by `train.py resume=DIR`, `evaluate.py run=DIR`
and `predict.py run=DIR` with one line and exit status 2, and leaves no trace (no
marker file, the target file unchanged, no build folder)."""

from __future__ import annotations

import os
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from zoo.cli import evaluate_main, predict_main, train_main


@pytest.fixture(scope="module")
def clean_run(config_dir, tmp_path_factory) -> Path:
    """A real tiny training (logistic regression on digits, trainer=debug)."""
    run = tmp_path_factory.mktemp("security") / "run"
    assert train_main(["trainer=debug", "logger=none", f"hydra.run.dir={run}"],
                      config_dir=config_dir) == 0
    assert (run / "checkpoints" / "last.pt").is_file()
    return run


class _Exec:
    """Unpickling this runs ``code``."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _write_marker(path: Path) -> str:
    return f"open({str(path)!r}, 'w').write('pwned')"


# Each payload tampers the config (a dict) of the run in `d` and returns a check that
# no side effect happened. They sit at different depths: a section, a nested node, a list.
def collect_env_run(cfg: dict, d: Path, out: Path):
    marker = out / "collect_env_marker"
    cfg["model"] = {"_target_": "torch.utils.collect_env.run", "command": f"touch {marker}"}
    return lambda: not marker.exists()


def hub_load(cfg: dict, d: Path, out: Path):
    marker = out / "hub_marker"
    (d / "hubconf.py").write_text(f"{_write_marker(marker)}\n\ndef evil():\n    return None\n")
    cfg["data"] = {"_target_": "torch.hub.load", "repo_or_dir": str(d), "model": "evil",
                   "source": "local", "trust_repo": True}
    return lambda: not marker.exists()


def torch_load_pickle(cfg: dict, d: Path, out: Path):
    marker = out / "pickle_marker"
    payload = d / "weights.pkl"
    payload.write_bytes(pickle.dumps(_Exec(_write_marker(marker))))
    cfg["model"]["backbone"] = {"_target_": "torch.load", "f": str(payload), "weights_only": False}
    return lambda: not marker.exists()


def cpp_load_inline(cfg: dict, d: Path, out: Path):
    build = out / "cpp_build"
    cfg["optim"] = {"_target_": "torch.utils.cpp_extension.load_inline", "name": "evil",
                    "cpp_sources": "int evil() { return 1; }", "functions": ["evil"],
                    "build_directory": str(build)}
    return lambda: not build.exists()


def torch_save(cfg: dict, d: Path, out: Path):
    victim = out / "precious.txt"
    victim.write_text("precious")
    cfg["model"]["layers"] = [{"a": 1}, {"_target_": "torch.save", "obj": "pwned", "f": str(victim)}]
    return lambda: victim.read_text() == "precious"


def oc_env(cfg: dict, d: Path, out: Path):
    os.environ["ZOO_SECURITY_TEST"] = "64"
    cfg["model"]["in_features"] = "${oc.env:ZOO_SECURITY_TEST}"
    return lambda: True


def oc_decode(cfg: dict, d: Path, out: Path):
    cfg["data"]["batch_size"] = "${oc.decode:'16'}"
    return lambda: True


def optim_outside_torch_optim(cfg: dict, d: Path, out: Path):
    cfg["optim"]["_target_"] = "torch.nn.Linear"
    return lambda: True


def hydra_node(cfg: dict, d: Path, out: Path):
    marker = out / "hydra_marker"
    cfg["hydra"] = {"callbacks": {"x": {"_target_": "torch.utils.collect_env.run",
                                        "command": f"touch {marker}"}}}
    return lambda: not marker.exists()


PAYLOADS = [collect_env_run, hydra_node, hub_load, torch_load_pickle, cpp_load_inline, torch_save, oc_env,
            oc_decode, optim_outside_torch_optim]
COMMANDS = {
    "train_resume": lambda d, cdir: train_main([f"resume={d}"], config_dir=cdir),
    "evaluate": lambda d, cdir: evaluate_main([f"run={d}"]),
    "predict": lambda d, cdir: predict_main([f"run={d}"]),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_tampered_run_config_is_refused(clean_run, config_dir, tmp_path, capsys, payload, command):
    d = tmp_path / "run"
    shutil.copytree(clean_run, d)
    out = tmp_path / "out"
    out.mkdir()
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    no_side_effect = payload(cfg, d, out)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    before = {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file()}
    capsys.readouterr()
    modules = set(sys.modules)
    try:
        code = COMMANDS[command](d, config_dir)
    finally:
        os.environ.pop("ZOO_SECURITY_TEST", None)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "refusing" in err or "resolves no lookups" in err, err
    assert no_side_effect()
    assert list(out.iterdir()) == [] or payload is torch_save
    # Nothing in the run directory was written, and the payload's modules were not imported.
    assert {p: p.stat().st_mtime_ns for p in d.rglob("*") if p.is_file()} == before
    assert "torch.utils.cpp_extension" in modules or "torch.utils.cpp_extension" not in sys.modules
    assert "hubconf" not in sys.modules


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_untampered_run_is_not_refused(clean_run, config_dir, tmp_path, capsys, command):
    """The same commands accept the run as it was written, so the refusals above are the
    payloads' doing."""
    d = tmp_path / "run"
    shutil.copytree(clean_run, d)
    capsys.readouterr()
    code = COMMANDS[command](d, config_dir)
    err = capsys.readouterr().err
    assert "refusing" not in err and "lookups" not in err, err
    if command == "evaluate":
        assert code == 0 and (d / "eval_test" / "metrics.json").is_file()
