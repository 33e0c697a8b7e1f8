"""SSD (Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016) on torchvision's
``SSD``: default boxes of several scales and aspect ratios tile feature maps of
decreasing resolution, each map predicts class scores and box offsets for its own
default boxes, matching is by IoU > 0.5 with hard negative mining at 3:1, and
decoding is per-class NMS (``torchvision.ops.batched_nms``).

``backbone: darknet`` (default) is a small CPU-sized feature pyramid: two stages of
:class:`DarknetBackbone` plus stride-2 extra layers, as SSD adds to VGG. Its default-box
scales follow the object sizes of the data instead of the paper's 0.2..0.9 of a 300 px
image. ``backbone: vgg16`` is the paper's SSD300 (torchvision's ``ssd300_vgg16``
without pretrained weights; see ``configs/experiment/ssd300_vgg16.yaml``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from zoo.errors import UserError, choices
from zoo.models.detection.backbones import DarknetBackbone, conv_bn_act
from zoo.models.detection.base import Detector, training_targets

BACKBONES = ("darknet", "vgg16")


class SSDFeatures(nn.Module):
    """Feature maps for SSD: Darknet stages from ``first_stage`` on, then extra layers
    (1x1 reduce, 3x3 stride 2) that each halve the resolution. For 128 px input, widths
    (24, 48, 96, 192), first stage 2 and three extras: 16x16, 8x8, 4x4, 2x2, 1x1 maps."""

    def __init__(self, widths: Sequence[int], extra_widths: Sequence[int], first_stage: int) -> None:
        super().__init__()
        self.body = DarknetBackbone(widths)
        self.first_stage = int(first_stage)
        extras, cin = [], widths[-1]
        for w in extra_widths:
            extras.append(nn.Sequential(conv_bn_act(cin, w // 2, 1), conv_bn_act(w // 2, w, 3, 2)))
            cin = w
        self.extras = nn.ModuleList(extras)
        self.out_channels = list(widths[first_stage:]) + list(extra_widths)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats = self.body.features(x)[self.first_stage:]
        y = feats[-1]
        for extra in self.extras:
            y = extra(y)
            feats.append(y)
        return OrderedDict((str(i), f) for i, f in enumerate(feats))


class SSD(Detector):
    """SSD (Liu et al., 2016) through torchvision's implementation; see the module docstring.

    Args:
        num_classes: K object classes (torchvision's model gets K + 1 with background).
        image_size: the fixed input side images are resized to.
        backbone: ``darknet`` (small, default) or ``vgg16`` (the paper's SSD300).
        widths, extra_widths, first_stage: the darknet feature pyramid.
        anchor_scales: default-box scales as fractions of the input side, one per feature
            map plus one (the last sets the extra ``sqrt(s_k s_k+1)`` box of the last map).
        aspect_ratios: extra aspect ratios per map (each r adds r and 1/r).
        iou_thresh: matching IoU of a default box to a true box.
        positive_fraction: hard negative mining keeps (1 - f) / f negatives per positive.
    """

    def __init__(self, *, num_classes: int, image_size: int = 128, backbone: str = "darknet",
                 widths: Sequence[int] = (24, 48, 96, 192),
                 extra_widths: Sequence[int] = (128, 128, 128), first_stage: int = 2,
                 anchor_scales: Sequence[float] = (0.07, 0.15, 0.3, 0.5, 0.75, 0.95),
                 aspect_ratios: Sequence[Sequence[float]] = ((2,), (2, 3), (2, 3), (2,), (2,)),
                 iou_thresh: float = 0.5, positive_fraction: float = 0.25,
                 topk_candidates: int = 400, score_thresh: float = 0.01, nms_thresh: float = 0.45,
                 detections_per_img: int = 100) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, score_thresh=score_thresh,
                         nms_thresh=nms_thresh, detections_per_img=detections_per_img)
        from torchvision.models.detection import ssd as tv_ssd
        from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

        common = dict(score_thresh=score_thresh, nms_thresh=nms_thresh,
                      detections_per_img=detections_per_img, iou_thresh=iou_thresh,
                      topk_candidates=topk_candidates, positive_fraction=positive_fraction)
        if backbone == "vgg16":
            self.net = tv_ssd.ssd300_vgg16(weights=None, weights_backbone=None,
                                           num_classes=num_classes + 1, **common)
            return
        if backbone != "darknet":
            raise UserError(f"unknown SSD backbone '{backbone}'; valid: {choices(BACKBONES)}")
        features = SSDFeatures(widths, extra_widths, first_stage)
        n_maps = len(features.out_channels)
        ratios = [list(r) for r in aspect_ratios]
        if len(ratios) != n_maps or len(anchor_scales) != n_maps + 1:
            raise UserError(f"SSD has {n_maps} feature maps: it needs {n_maps} aspect_ratios lists "
                            f"and {n_maps + 1} anchor_scales (got {len(ratios)} and "
                            f"{len(anchor_scales)})")
        anchors = DefaultBoxGenerator(ratios, scales=list(anchor_scales))
        head = tv_ssd.SSDHead(features.out_channels, anchors.num_anchors_per_location(),
                              num_classes + 1)
        self.net = tv_ssd.SSD(features, anchors, (image_size, image_size), num_classes + 1,
                              head=head, **common)

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        images, targets = batch
        losses = self.net(list(images), training_targets(targets))
        return {"loss_box": losses["bbox_regression"], "loss_cls": losses["classification"]}

    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = self.net(list(images))
        return [{k: d[k] for k in ("boxes", "scores", "labels")} for d in out]
