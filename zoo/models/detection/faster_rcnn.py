"""Faster R-CNN (Ren et al., "Faster R-CNN: Towards Real-Time Object Detection with Region
Proposal Networks", NeurIPS 2015) with a feature pyramid (Lin et al., 2017), on
torchvision's ``FasterRCNN``.

Two stages: a region proposal network slides anchors of several sizes and aspect
ratios over every pyramid level and scores "object or not" plus box offsets; the best
proposals after NMS are cropped from the features with RoIAlign, and a box head
classifies each one into K classes + background and refines its box. Final boxes go
through per-class NMS (``torchvision.ops.batched_nms``).

The default ``backbone: darknet`` is a small pyramid sized for CPU training on small
images: anchors from 8 px (the paper's start at 32 px on 800 px images would never
match a 10 px object), fewer proposals and RoI samples, a 256-wide box head instead
of 1024 and no resizing of the input beyond ``image_size``. ``backbone: resnet50``
with ``configs/experiment/faster_rcnn_r50_fpn.yaml`` is the paper's ResNet-50-FPN
recipe (torchvision's defaults, no pretrained weights).

In training the RoIs are cropped by :class:`zoo.layers.roi.MultiScaleRoIAlign`:
torchvision's pooler with a separable RoIAlign (two matrix products per image, the
same numbers and gradients), because torchvision's CPU ``roi_align`` backward
scatters one sample at a time on one core and took ~40% of a Mask R-CNN step here
(1.33 s -> 0.88 s per step of 16 images, 2 threads). Inference runs torchvision's op.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zoo.errors import UserError, choices
from zoo.models.detection.backbones import DarknetBackbone
from zoo.models.detection.base import Detector, training_targets

BACKBONES = ("darknet", "resnet18", "resnet34", "resnet50", "resnet101")


def _darknet_fpn(widths: Sequence[int], channels: int, levels: int) -> nn.Module:
    """FPN over the last ``levels`` Darknet stages, plus a max-pooled coarsest level."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    body = DarknetBackbone(widths)
    first = len(widths) - levels
    return_layers = {f"stage{i}": str(i - first) for i in range(first, len(widths))}
    return BackboneWithFPN(body, return_layers, list(widths[first:]), channels,
                           extra_blocks=LastLevelMaxPool())


def rcnn_parts(*, num_classes: int, image_size: int, backbone: str, widths: Sequence[int],
               fpn_channels: int, fpn_levels: int, anchor_sizes: Sequence[Sequence[float]],
               aspect_ratios: Sequence[float], max_size: int | None, rpn_pre_nms_top_n_train: int,
               rpn_pre_nms_top_n_test: int, rpn_post_nms_top_n_train: int,
               rpn_post_nms_top_n_test: int, rpn_batch_size_per_image: int,
               box_batch_size_per_image: int, representation_size: int, roi_sampling_ratio: int,
               score_thresh: float, nms_thresh: float, detections_per_img: int
               ) -> tuple[nn.Module, list[str], dict[str, Any]]:
    """The pyramid backbone, its level names and the keyword arguments of torchvision's
    ``FasterRCNN`` (anchors, box RoIAlign, box head and predictor, sampling and
    post-processing settings) shared by Faster and Mask R-CNN; see :class:`FasterRCNN`."""
    from torchvision.models.detection import faster_rcnn as tv
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from zoo.layers.roi import MultiScaleRoIAlign

    if backbone == "darknet":
        body = _darknet_fpn(widths, fpn_channels, fpn_levels)
        levels = [str(i) for i in range(fpn_levels)]
    elif backbone in BACKBONES:
        # BatchNorm, not torchvision's default FrozenBatchNorm2d: with no pretrained
        # statistics a frozen norm is the identity and training from scratch stalls.
        body = resnet_fpn_backbone(backbone_name=backbone, weights=None,
                                   norm_layer=nn.BatchNorm2d, trainable_layers=5)
        levels = ["0", "1", "2", "3"]
    else:
        raise UserError(f"unknown R-CNN backbone '{backbone}'; valid: {choices(BACKBONES)}")
    sizes = tuple(tuple(max(int(round(s * image_size)), 1) for s in level)
                  for level in anchor_sizes)  # pixels of the resized input
    if len(sizes) != len(levels) + 1:
        raise UserError(f"the {backbone} pyramid has {len(levels) + 1} levels: anchor_sizes "
                        f"needs {len(levels) + 1} tuples, got {len(sizes)}")
    anchors = AnchorGenerator(sizes, (tuple(float(r) for r in aspect_ratios),) * len(sizes))
    roi_pool = MultiScaleRoIAlign(featmap_names=levels, output_size=7,
                                  sampling_ratio=roi_sampling_ratio)
    kwargs = dict(
        min_size=image_size, max_size=max_size or round(image_size * 1333 / 800),
        rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
        box_head=tv.TwoMLPHead(body.out_channels * 7 * 7, representation_size),
        box_predictor=tv.FastRCNNPredictor(representation_size, num_classes + 1),
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        box_batch_size_per_image=box_batch_size_per_image,
        box_score_thresh=score_thresh, box_nms_thresh=nms_thresh,
        box_detections_per_img=detections_per_img)
    return body, levels, kwargs


class FasterRCNN(Detector):
    """Faster R-CNN with FPN (Ren et al., 2015; Lin et al., 2017) via torchvision.

    Args:
        num_classes: K object classes (torchvision's model gets K + 1 with background).
        image_size: images are resized so their shorter side is this (``min_size``) and
            their longer side at most ``max_size`` (default ``image_size`` x 1333 / 800).
        backbone: ``darknet`` (small, default) or a ResNet FPN (``resnet50`` = the paper).
        widths, fpn_channels, fpn_levels: the darknet pyramid.
        anchor_sizes: anchor sides as fractions of ``image_size`` (so the anchors follow
            the input size), one tuple per pyramid level (``fpn_levels`` + 1 for the
            pooled level); the default is 8..96 px at 128 px.
        aspect_ratios: anchor height/width ratios, shared by every level.
        rpn_*, box_*: torchvision's proposal and sampling settings.
        representation_size: width of the two-layer box head.
        roi_sampling_ratio: RoIAlign samples per bin side (fixed; > 0 keeps the fast
            separable RoIAlign in training).
    """

    def __init__(self, *, num_classes: int, image_size: int = 128, backbone: str = "darknet",
                 widths: Sequence[int] = (24, 48, 96, 192), fpn_channels: int = 64,
                 fpn_levels: int = 3,
                 anchor_sizes: Sequence[Sequence[float]] = ((0.0625, 0.094), (0.125, 0.19),
                                                            (0.25, 0.375), (0.5, 0.75)),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), max_size: int | None = None,
                 rpn_pre_nms_top_n_train: int = 300, rpn_pre_nms_top_n_test: int = 300,
                 rpn_post_nms_top_n_train: int = 200, rpn_post_nms_top_n_test: int = 100,
                 rpn_batch_size_per_image: int = 128, box_batch_size_per_image: int = 64,
                 representation_size: int = 256, roi_sampling_ratio: int = 2, score_thresh: float = 0.01,
                 nms_thresh: float = 0.5, detections_per_img: int = 100) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, score_thresh=score_thresh,
                         nms_thresh=nms_thresh, detections_per_img=detections_per_img)
        body, levels, kwargs = rcnn_parts(
            num_classes=num_classes, image_size=image_size, backbone=backbone, widths=widths,
            fpn_channels=fpn_channels, fpn_levels=fpn_levels, anchor_sizes=anchor_sizes,
            aspect_ratios=aspect_ratios, max_size=max_size,
            rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
            rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
            rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
            rpn_batch_size_per_image=rpn_batch_size_per_image,
            box_batch_size_per_image=box_batch_size_per_image,
            representation_size=representation_size, roi_sampling_ratio=roi_sampling_ratio,
            score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections_per_img)
        self.net = self.build_net(body, levels, kwargs)

    def build_net(self, body: nn.Module, levels: list[str], kwargs: dict[str, Any]) -> nn.Module:
        """torchvision's two-stage detector on ``body`` (``levels``: its pyramid's names)."""
        from torchvision.models.detection import faster_rcnn as tv

        return tv.FasterRCNN(body, num_classes=None, **kwargs)  # K + 1 set by box_predictor

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        images, targets = batch
        losses = self.net(list(images), training_targets(targets))
        return {"loss_rpn_obj": losses["loss_objectness"], "loss_rpn_box": losses["loss_rpn_box_reg"],
                "loss_cls": losses["loss_classifier"], "loss_box": losses["loss_box_reg"]}

    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = self.net(list(images))
        return [{k: d[k] for k in ("boxes", "scores", "labels")} for d in out]
