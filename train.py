"""python train.py [key=value ...]   (python train.py --help lists models and datasets)"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.cli import train_main  # noqa: E402

if __name__ == "__main__":
    # zoo/configs/ beside this file; ZOO_CONFIG_DIR points at another tree (tests, forks)
    shipped = Path(__file__).resolve().parent / "zoo" / "configs"
    config_dir = os.environ.get("ZOO_CONFIG_DIR") or shipped
    sys.exit(train_main(config_dir=Path(config_dir)))
