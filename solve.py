"""python solve.py [problem=NAME] [algo=NAME] [key=value ...]   (--help lists them)"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.cli import solve_main  # noqa: E402

if __name__ == "__main__":
    # zoo/configs/ beside this file; ZOO_CONFIG_DIR points at another tree (tests, forks)
    shipped = Path(__file__).resolve().parent / "zoo" / "configs"
    config_dir = os.environ.get("ZOO_CONFIG_DIR") or shipped
    sys.exit(solve_main(config_dir=Path(config_dir)))
