"""torchrun worker for test_step.py: the manual GAN under DDP; prints each rank's
parameter checksum (equal on every rank when the gradients were all-reduced)."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.toys import Gaussians2D, TinyGAN, compose_cfg  # noqa: E402

from zoo.engine import distributed as D  # noqa: E402
from zoo.engine import trainer as T  # noqa: E402

order, run_dir = sys.argv[1], Path(sys.argv[2])
T.build_model = lambda c: TinyGAN(order=order, dropout=0.0)
T.build_data = lambda c: Gaussians2D(batch_size=16)
cfg = compose_cfg(Path(os.environ["ZOO_CONFIG_DIR"]), "trainer.max_steps=6", "trainer.accumulate=2",
                  "trainer.log_every=2")
D.init(torch.device("cpu"))
trainer = T.Trainer(cfg, run_dir, torch.device("cpu"))
summary = trainer.fit()
total = float(sum(p.double().sum() for p in trainer.model.parameters()))
print(f"rank {D.rank()} steps {summary['steps']} checksum {total!r}", flush=True)
D.cleanup()
