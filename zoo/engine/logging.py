"""Run logging: TensorBoard scalars and images (rank 0 only), pictures also as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.viz import save_png


class RunLogger:
    def __init__(self, run_dir: Path, logger_cfg: Any, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        name = str(logger_cfg.get("name", "tensorboard")) if logger_cfg is not None else "none"
        if enabled and name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def images(self, images: dict[str, torch.Tensor], step: int) -> None:
        """name -> (3, H, W) float image in [0, 1]: TensorBoard and images/<name>_step<N>.png."""
        if not self.enabled or not images:
            return
        out = self.run_dir / "images"
        out.mkdir(parents=True, exist_ok=True)
        for name, img in images.items():
            img = img.detach().float().cpu().clamp(0, 1)
            if self.writer is not None:
                self.writer.add_image(name, img, step)
            save_png(img, out / f"{name.replace('/', '_')}_step{step:06d}.png")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
