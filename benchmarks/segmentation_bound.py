"""The best mIoU any model whose class scores live at output stride ``s`` can reach on
the ``shapes_seg`` validation scenes, when the scores are upsampled bilinearly (PSPNet)
or by FCN's bilinear-initialised transposed convolutions.

For every image the low-resolution scores (K, H/s, W/s) are free parameters, optimised
directly against the ground truth (pixel cross-entropy after upsampling, Adam); the
argmax of the upsampled optimum is scored with the dataset-accumulated mIoU of
``zoo.metrics.segmentation``. No network is trained: this is the ceiling the upsampling
alone imposes, whatever the encoder. It shows why the stride-8 models (FCN-8s, PSPNet)
train on 128 px scenes while U-Net and SegNet, which decode to full resolution, use 64 px.

    python benchmarks/segmentation_bound.py                  # sizes 64, 96, 128; strides 8, 4
    python benchmarks/segmentation_bound.py --sizes 64 --strides 8 16 32
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bound(size: int, stride: int, *, num_val: int = 200, steps: int = 300, seed: int = 0) -> dict[str, float]:
    """Per-class IoU and mIoU of the optimal stride-``stride`` scores at ``size`` px."""
    from zoo.data.segmentation import ShapesSegData
    from zoo.metrics.segmentation import scores_from_counts, segmentation_counts

    data = ShapesSegData(image_size=size, num_val=num_val, seed=seed)
    ds = data.build("val")
    gts = torch.stack([ds[i][1] for i in range(len(ds))])                  # (N, H, W)
    k = len(data.meta["class_names"])
    low = torch.zeros(len(gts), k, size // stride, size // stride, requires_grad=True)
    opt = torch.optim.Adam([low], lr=0.5)
    for _ in range(steps):
        up = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        loss = F.cross_entropy(up, gts)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).argmax(1)
    iou = scores_from_counts(segmentation_counts(pred, gts, k))["iou"]
    return {"miou": float(iou.nanmean()), **{f"iou_{i}": float(v) for i, v in enumerate(iou)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    ap.add_argument("--strides", type=int, nargs="+", default=[8, 4])
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    print("| image size | output stride | best mIoU | IoU background | IoU circle | IoU square | IoU triangle |")
    print("|---|---|---|---|---|---|---|")
    for size in a.sizes:
        for s in a.strides:
            r = bound(size, s, steps=a.steps)
            cells = " | ".join(f"{r[f'iou_{i}']:.3f}" for i in range(4))
            print(f"| {size} | {s} | {r['miou']:.3f} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
