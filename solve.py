"""python solve.py [problem=NAME] [algo=NAME] [key=value ...]   (--help lists them)"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo.cli import solve_main  # noqa: E402

if __name__ == "__main__":
    # zoo/configs/ of this checkout (the zoo imported from here), plus $ZOO_CONFIG_DIR
    # and --config-dir folders
    sys.exit(solve_main())
