"""What every semantic segmenter shares: the loss switch, padding to the network's stride
and cropping back (any input size gives logits of that size), and the task's I/O form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zoo.data.batches import SegmentationBatch
from zoo.models.base import ZooModel
from zoo.models.segmentation.losses import SegmentationLoss


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) at the bottom/right to multiples of ``multiple``; returns the
    padded tensor and the original (H, W). Reflection needs a pad smaller than the side;
    a tiny input falls back to replicating its border."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        if mode == "reflect" and (ph >= h or pw >= w):
            mode = "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def mirror_pad_predict(fn: Any, images: torch.Tensor, margin: int, tile: int | None = None) -> torch.Tensor:
    """U-Net's overlap-tile strategy: reflect-pad the image by ``margin`` so border pixels
    see mirrored context instead of zeros, predict, and crop the margin back. With
    ``tile``, the image is cut into ``tile`` x ``tile`` squares, each predicted with its
    ``margin`` of (real or mirrored) context, and only the centres are kept.
    ``fn``: (B, C, H', W') -> (B, K, H', W') logits. Returns (B, K, H, W)."""
    b, _, h, w = images.shape
    if margin <= 0 and tile is None:
        return fn(images)
    mode = "reflect" if margin < min(h, w) else "replicate"
    padded = F.pad(images, (margin,) * 4, mode=mode) if margin > 0 else images
    if tile is None:
        out = fn(padded)
        return out[..., margin:margin + h, margin:margin + w]
    out = None
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            th, tw = min(tile, h - y), min(tile, w - x)
            piece = fn(padded[..., y:y + th + 2 * margin, x:x + tw + 2 * margin])
            if out is None:
                out = piece.new_zeros(b, piece.shape[1], h, w)
            out[..., y:y + th, x:x + tw] = piece[..., margin:margin + th, margin:margin + tw]
    assert out is not None
    return out


class SemanticSegmenter(ZooModel):
    """Base of the semantic segmenters: ``forward(images) -> (B, C, H, W)`` logits at the
    input size; ``forward_aux`` may add auxiliary logits (PSPNet) that train with weight
    ``aux_weight``. ``model.loss`` picks the loss (``zoo.models.segmentation.losses``)."""

    task = "segmentation"
    stride: int = 1          # inputs are padded to a multiple of this and cropped back
    aux_weight: float = 0.0

    def __init__(self, *, num_classes: int, loss: str = "ce", ignore_index: int = 255,
                 class_weights: Sequence[float] | str | None = None, dice_weight: float = 1.0,
                 edge_w0: float = 10.0, edge_sigma: float = 3.0, area_weight: float = 1.0,
                 small_area: float = 0.01) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.criterion = SegmentationLoss(loss, ignore_index=ignore_index, class_weights=class_weights,
                                          dice_weight=dice_weight, w0=edge_w0, sigma=edge_sigma,
                                          area_weight=area_weight, small_area=small_area)
        self.criterion.check_classes(self.num_classes)

    def on_train_start(self, data: Any, run_dir: str) -> None:
        """``class_weights: median_frequency``: fit the weights to the training label maps
        (augmentation does not change class frequencies) and save them in the run as
        ``class_weights.json``."""
        super().on_train_start(data, run_dir)
        if not self.criterion.median_frequency:
            return
        import json
        from pathlib import Path

        ds = data.dataset("train")
        weights = self.criterion.fit_class_weights(ds[i][1] for i in range(len(ds)))
        names = list(data.meta.get("class_names") or range(self.num_classes))
        table = {str(n): round(w, 6) for n, w in zip(names, weights or [])}
        print(f"median frequency class weights over {len(ds)} training maps: {table}", flush=True)
        if run_dir:
            (Path(run_dir) / "class_weights.json").write_text(json.dumps(table, indent=1) + "\n")

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, C, H, W) with H, W multiples of ``stride`` -> (main logits, aux logits or None)."""
        raise NotImplementedError

    def _run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, (h, w) = pad_to_multiple(images, self.stride)
        main, aux = self.logits(x)
        main = main[..., :h, :w]
        return main, (aux[..., :h, :w] if aux is not None else None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images)[0]

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        b = SegmentationBatch.of(batch)
        main, aux = self._run(b.images)
        losses = {"loss_seg": self.criterion(main, b.masks)}
        if aux is not None and self.aux_weight > 0:
            losses["loss_aux"] = self.aux_weight * self.criterion(aux, b.masks)
        return losses

    def images_of(self, batch: Any) -> torch.Tensor:
        return batch if isinstance(batch, torch.Tensor) else SegmentationBatch.of(batch).images

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        """(B, C, H, W) logits at the images' size."""
        return self(self.images_of(batch))
