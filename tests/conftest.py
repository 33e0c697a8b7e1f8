import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Several test processes share 2 cores: one thread each avoids oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def config_dir(tmp_path_factory) -> Path:
    """The real configs/ plus the test-only configs under tests/configs/."""
    d = tmp_path_factory.mktemp("configs") / "configs"
    shutil.copytree(ROOT / "zoo" / "configs", d)
    for sub in (ROOT / "tests" / "configs").iterdir():
        for f in sub.glob("*.yaml"):
            shutil.copy(f, d / sub.name / f.name)
    return d


@pytest.fixture
def train(config_dir):
    """train(*overrides) -> exit status, through the real train.py entry (in-process)."""
    from zoo.cli import train_main

    def run(*overrides: str) -> int:
        return train_main(list(overrides), config_dir=config_dir)

    return run
