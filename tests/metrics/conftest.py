import sys
from pathlib import Path

# coco_synth.py (the randomised COCO sets the metric tests share) sits beside the tests;
# with --import-mode=importlib test folders are not put on sys.path by pytest.
sys.path.insert(0, str(Path(__file__).resolve().parent))
