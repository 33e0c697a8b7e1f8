"""RoIAlign as two small matrix products, with a fast backward on CPU.

RoIAlign (He et al., Mask R-CNN) averages ``sampling_ratio``² bilinear samples per output
bin. Bilinear interpolation is separable: a sample at (y, x) weighs row ``floor(y)`` and
the next by (1 - ly, ly), and column ``floor(x)`` and the next by (1 - lx, lx), so the
whole crop of one RoI is ``Ay @ F @ Ax.T`` with ``Ay`` (out_h, H) and ``Ax`` (out_w, W)
interpolate-and-average matrices and ``F`` one channel of the feature map. Forward and
backward are then batched matrix products that use every core, where torchvision's CPU
``roi_align`` backward scatters every sample of every channel one at a time (the most
expensive op of a Faster or Mask R-CNN training step here: ~40% of it).

The numbers are torchvision's (``torchvision.ops.roi_align``, same sample positions,
border rules and averaging; ``tests/layers/test_roi.py`` checks outputs and gradients
against it). Only a fixed ``sampling_ratio > 0`` is supported; torchvision's adaptive
mode (``sampling_ratio <= 0``, a per-RoI sample count) falls back to torchvision.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign as _TVMultiScaleRoIAlign
from torchvision.ops import roi_align as _tv_roi_align

from zoo.layers import Example, _randn


def _axis_weights(start: Tensor, length: Tensor, bins: int, ratio: int, size: int) -> Tensor:
    """(R, bins, size): for each RoI, the average of the bilinear weights of its ``ratio``
    samples per bin along one axis of a feature map ``size`` long (torchvision's rules: a
    sample beyond [-1, size] counts zero, one in [-1, 0] reads index 0, one past size - 1
    reads the last index)."""
    r = start.shape[0]
    step = (torch.arange(bins * ratio, dtype=start.dtype, device=start.device) + 0.5) / ratio
    pos = start[:, None] + step[None] * (length / bins)[:, None]              # (R, bins * ratio)
    valid = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0.0)
    low = pos.floor().long()
    last = low >= size - 1
    low = torch.where(last, torch.full_like(low, size - 1), low)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(pos), pos - low.to(pos.dtype))
    keep = valid.to(pos.dtype) / ratio
    w = torch.zeros(r, bins * ratio, size, dtype=start.dtype, device=start.device)
    w.scatter_add_(2, low[..., None], ((1.0 - frac) * keep)[..., None])
    w.scatter_add_(2, high[..., None], (frac * keep)[..., None])
    return w.view(r, bins, ratio, size).sum(2)


def roi_align(features: Tensor, rois: Tensor, output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 2, aligned: bool = False) -> Tensor:
    """``torchvision.ops.roi_align`` for a Tensor[K, 5] of (batch index, x1, y1, x2, y2)
    RoIs: (K, C, out_h, out_w). The RoIs get no gradient (as in torchvision)."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if sampling_ratio <= 0:
        return _tv_roi_align(features, rois, (oh, ow), spatial_scale, sampling_ratio, aligned)
    _, c, h, w = features.shape
    if rois.shape[0] == 0:
        return features.new_zeros(0, c, oh, ow) + 0.0 * features.sum()   # keeps the graph
    rois = rois.detach().to(features.dtype)
    offset = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * spatial_scale - offset, rois[:, 2] * spatial_scale - offset
    rw, rh = rois[:, 3] * spatial_scale - offset - x1, rois[:, 4] * spatial_scale - offset - y1
    if not aligned:                                   # torchvision's legacy minimum of 1 cell
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    ay = _axis_weights(y1, rh, oh, sampling_ratio, h)                          # (K, oh, H)
    ax = _axis_weights(x1, rw, ow, sampling_ratio, w)                          # (K, ow, W)
    batch = rois[:, 0].long()
    order, crops = [], []
    for b in torch.unique(batch).tolist():
        idx = torch.nonzero(batch == b).squeeze(1)
        k = idx.numel()
        # rows: one GEMM (k * oh, H) @ (H, C * W); columns: a batched (oh * C, W) @ (W, ow)
        f = features[b].permute(1, 0, 2).reshape(h, c * w)
        rows = (ay[idx].reshape(k * oh, h) @ f).view(k, oh * c, w)
        crop = torch.bmm(rows, ax[idx].transpose(1, 2)).view(k, oh, c, ow).permute(0, 2, 1, 3)
        order.append(idx)
        crops.append(crop)
    return _in_order(order, crops)


def _in_order(order: list[Tensor], crops: list[Tensor]) -> Tensor:
    """Crops computed for the RoIs ``order[i]``, back in the RoIs' own order."""
    if len(crops) == 1:
        return crops[0].contiguous()
    idx = torch.cat(order)
    inverse = torch.empty_like(idx)
    inverse[idx] = torch.arange(idx.numel(), device=idx.device)
    return torch.cat(crops)[inverse].contiguous()


class MultiScaleRoIAlign(_TVMultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` (same levels, scales and FPN level mapping:
    k = floor(4 + log2(sqrt(area) / 224)), clamped to the pyramid) with the separable
    :func:`roi_align` above in training, where its backward is what costs; inference
    and export run torchvision's own op."""

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> Tensor:
        if not (self.training and torch.is_grad_enabled()) or self.scales is None:
            # Inference (and export tracing) keeps torchvision's op, whose forward is as fast; the
            # first call also sets the levels' scales and the level mapper.
            return super().forward(x, boxes, image_shapes)
        feats = [v for k, v in x.items() if k in self.featmap_names]
        scales = self.scales
        assert scales is not None and self.map_levels is not None
        size = self.output_size
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1)
                          for i, b in enumerate(boxes)], dim=0)
        if len(feats) == 1 or rois.shape[0] == 0:
            return roi_align(feats[0], rois, size, scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)
        order, crops = [], []
        for level, (f, scale) in enumerate(zip(feats, scales)):
            idx = torch.nonzero(levels == level).squeeze(1)
            if idx.numel():
                order.append(idx)
                crops.append(roi_align(f, rois[idx], size, scale, self.sampling_ratio))
        return _in_order(order, crops)

    @classmethod
    def example(cls) -> Example:
        feats = {"0": _randn(2, 4, 16, 16).requires_grad_(True), "1": _randn(2, 4, 8, 8).requires_grad_(True)}
        boxes = [torch.tensor([[0.0, 0, 40, 40], [4, 4, 60, 50]]), torch.tensor([[10.0, 10, 20, 30]])]
        shapes = [(64, 64), (64, 64)]
        module = cls(["0", "1"], 7, 2)
        module(feats, boxes, shapes)          # sets the scales: the example runs the fast path
        return Example(module, (feats, boxes, shapes), (3, 4, 7, 7))
