"""python train.py --help"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.cli import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main(config_dir=Path(__file__).resolve().parent / "configs"))
