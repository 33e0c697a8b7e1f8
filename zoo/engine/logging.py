"""Run logging, built from the ``logger`` config's ``_target_``: scalars and pictures
(rank 0 only); pictures are also written as PNG files under ``images/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from zoo.registry import buildable
from zoo.viz import save_png


@buildable
class RunLogger:
    """Pictures as ``images/<name>_step<N>.png``; scalars go nowhere (``logger=none``).

    ``images_every``: pictures of the first validation batch at every n-th validation
    (0: never). Subclasses add a scalar sink.
    """

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, images_every: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.images_every = int(images_every or 0)

    def wants_images(self, validation_index: int) -> bool:
        return self.enabled and self.images_every > 0 and validation_index % self.images_every == 0

    def scalars(self, values: dict[str, float], step: int) -> None:
        pass

    def images(self, images: dict[str, torch.Tensor], step: int) -> None:
        """name -> (3, H, W) float image in [0, 1]: images/<name>_step<N>.png (and the sink's)."""
        if not self.enabled or not images:
            return
        out = self.run_dir / "images"
        out.mkdir(parents=True, exist_ok=True)
        for name, img in images.items():
            img = img.detach().float().cpu().clamp(0, 1)
            self._image(name, img, step)
            save_png(img, out / f"{name.replace('/', '_')}_step{step:06d}.png")

    def _image(self, name: str, img: torch.Tensor, step: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger(RunLogger):
    """TensorBoard event files under ``tb/`` (scalars and pictures), plus the PNGs."""

    def __init__(self, run_dir: str | Path, *, enabled: bool = True, images_every: int = 1) -> None:
        super().__init__(run_dir, enabled=enabled, images_every=images_every)
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def _image(self, name: str, img: torch.Tensor, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(name, img, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


# Run directories written before loggers had a _target_ name them by ``name``.
LEGACY_NAMES = {"none": "zoo.engine.logging.RunLogger",
                "tensorboard": "zoo.engine.logging.TensorBoardLogger"}


def build_logger(logger_cfg: Any, run_dir: Path, enabled: bool = True) -> RunLogger:
    """The logger a ``logger`` config names (``_target_``, or an old run's ``name``)."""
    from omegaconf import DictConfig, OmegaConf

    from zoo.engine.config import build
    from zoo.errors import UserError, choices

    if logger_cfg is None:
        return RunLogger(run_dir, enabled=enabled)
    node = OmegaConf.to_container(logger_cfg, resolve=True) if isinstance(logger_cfg, DictConfig) \
        else dict(logger_cfg)
    if "_target_" not in node:
        name = str(node.pop("name", "tensorboard"))
        if name not in LEGACY_NAMES:
            raise UserError(f"unknown logger '{name}'; valid choices: {choices(LEGACY_NAMES)}")
        node["_target_"] = LEGACY_NAMES[name]
    node.pop("name", None)
    return build(node, "logger", run_dir=run_dir, enabled=enabled)
