"""An installed zoo (a wheel, not a checkout) finds its configs from any directory, has
console scripts and ``python -m zoo``, and takes a person's own config folders."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import one_line_error

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "zoo" / "configs"
QUICK = ["model=logistic_regression", "trainer.max_steps=2", "logger=none", "trainer.progress=false"]


def _env_without_checkout() -> dict[str, str]:
    """The environment with no PYTHONPATH and no ZOO_CONFIG_DIR: what a person who
    installed the wheel has."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ZOO_CONFIG_DIR")}


# --------------------------------------------------------------------------- shipped configs
def test_configs_compose_from_the_package_not_a_folder(monkeypatch, tmp_path):
    from zoo.engine.config import compose

    monkeypatch.delenv("ZOO_CONFIG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # nowhere near a checkout's ./configs
    cfg = compose(None, "train", ["model=lenet"])
    main = [s for s in cfg.hydra.runtime.config_sources if s["provider"] == "main"]
    assert main == [{"path": "zoo.configs", "schema": "pkg", "provider": "main"}]
    assert cfg.model._target_ == "zoo.models.classification.lenet.LeNet5"


def test_package_data_ships_every_config():
    """pyproject's package-data patterns cover every file under zoo/configs/ (a config in
    a deeper folder would be missing from the wheel)."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["zoo.configs"]
    shipped = {Path(p).relative_to(CONFIGS) for pat in patterns
               for p in glob.glob(str(CONFIGS / pat))}
    present = {p.relative_to(CONFIGS) for p in CONFIGS.rglob("*.yaml")}
    assert present and present <= shipped, sorted(map(str, present - shipped))


def test_checkout_configs_link_to_the_package():
    assert (ROOT / "configs").resolve() == CONFIGS.resolve()
    assert (ROOT / "configs" / "train.yaml").is_file()


def test_console_scripts_are_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"zoo-train": "zoo.cli:train_main", "zoo-evaluate": "zoo.cli:evaluate_main",
                       "zoo-predict": "zoo.cli:predict_main", "zoo-solve": "zoo.cli:solve_main",
                       "zoo-export": "zoo.export.__main__:main"}


def test_python_m_zoo_routes_to_each_entry(capsys):
    from zoo.__main__ import main

    assert main(["train", "--help"]) == 0
    assert "usage: python train.py" in capsys.readouterr().out
    assert main(["solve", "--help"]) == 0
    assert "usage: python solve.py" in capsys.readouterr().out
    assert main(["evaluate", "--help"]) == 0
    assert "usage: python evaluate.py" in capsys.readouterr().out
    assert main(["export", "--help"]) == 0
    assert "usage: python -m zoo.export" in capsys.readouterr().out
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in one_line_error(capsys)


def test_python_m_zoo_trains_from_another_directory(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "zoo", "train", *QUICK, f"hydra.run.dir={run}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
                          env={**_env_without_checkout(), "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "metrics.json").is_file() and (run / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_wheel_installs_and_trains_anywhere(tmp_path):
    """Build the wheel from the package's own files, install it into a fresh virtual
    environment (dependencies from the system's site-packages) and train with the
    ``zoo-train`` console script from an unrelated directory."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "zoo", src / "zoo", ignore=shutil.ignore_patterns("__pycache__"))
    env = _env_without_checkout()
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                   check=True, env=env, cwd=tmp_path, timeout=600)
    wheel = next((tmp_path / "dist").glob("zoo-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
                   check=True, env=env, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(py), "-c", "import zoo; print(zoo.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(venv) in where, where  # the installed copy, not a checkout
    run = elsewhere / "run"
    proc = subprocess.run([str(venv / "bin" / "zoo-train"), *QUICK, f"hydra.run.dir={run}"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "metrics.json").is_file()
    proc = subprocess.run([str(venv / "bin" / "zoo-train"), "model=nope"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown model 'nope'")
