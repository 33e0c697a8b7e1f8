"""Mask R-CNN (He, Gkioxari, Dollár and Girshick, "Mask R-CNN", ICCV 2017) on torchvision's
``MaskRCNN``, with the small Darknet FPN of :mod:`zoo.models.detection.faster_rcnn`.

Faster R-CNN plus a third head: for every detected box, RoIAlign crops a
``mask_roi_size`` x ``mask_roi_size`` window of the pyramid features, a few 3x3
convolutions and a 2x transposed convolution predict one ``2 * mask_roi_size`` square
mask per class, and only the mask of the box's own class is trained (per-pixel binary
cross-entropy on positive RoIs) or kept. Classification and mask prediction are
decoupled: the class competition happens in the box head, not between mask pixels.
RoIAlign (bilinear sampling at exact fractional positions, no quantisation) is what
makes the masks line up with the objects; the paper's ablation shows RoIPool's
rounding costs several points of mask AP.

The task is detection (boxes, scores, labels per image) with ``masks`` added: (N, H, W)
uint8, each box's mask pasted into the image's own pixels and cut at ``mask_thresh``,
the same form as the targets' instance masks. The evaluator then scores boxes (``map``
...) and masks (``mask_map``, ``mask_map_50`` ...). Training needs instance masks in the
targets: ``data=shapes`` or ``data=coco`` with ``data.with_masks=true`` (the model
config sets it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.errors import DataError
from zoo.models.detection.base import training_targets
from zoo.models.detection.faster_rcnn import FasterRCNN


class MaskRCNN(FasterRCNN):
    """Mask R-CNN (He et al., 2017) via torchvision, sized for CPU training.

    Args:
        num_classes: K object classes.
        mask_roi_size: side of the RoIAlign window the mask head reads (the paper: 14);
            masks are predicted at twice this side.
        mask_layers: widths of the mask head's 3x3 convolutions (the paper: four of 256).
        mask_dim_reduced: channels of the 2x transposed convolution before the per-class
            1x1 mask logits.
        mask_sampling_ratio: RoIAlign samples per bin side for the mask window.
        mask_thresh: probability at which a pasted mask becomes a pixel of the object.
        Every other argument is :class:`~zoo.models.detection.faster_rcnn.FasterRCNN`'s.
    """

    iou_types = ("bbox", "segm")

    def __init__(self, *, num_classes: int, mask_roi_size: int = 14,
                 mask_layers: Sequence[int] = (64, 64), mask_dim_reduced: int = 64,
                 mask_sampling_ratio: int = 2, mask_thresh: float = 0.5, **kwargs: Any) -> None:
        # Read by build_net while FasterRCNN.__init__ assembles the network.
        self.mask_settings = {"roi_size": int(mask_roi_size), "layers": [int(w) for w in mask_layers],
                              "dim_reduced": int(mask_dim_reduced),
                              "sampling_ratio": int(mask_sampling_ratio)}
        super().__init__(num_classes=num_classes, **kwargs)
        self.mask_thresh = float(mask_thresh)

    def build_net(self, body: nn.Module, levels: list[str], kwargs: dict[str, Any]) -> nn.Module:
        from torchvision.models.detection import mask_rcnn as tv
        from zoo.layers.roi import MultiScaleRoIAlign

        s = self.mask_settings
        head = tv.MaskRCNNHeads(body.out_channels, s["layers"], dilation=1)
        return tv.MaskRCNN(
            body, num_classes=None,  # K + 1 set by the box and mask predictors
            mask_roi_pool=MultiScaleRoIAlign(featmap_names=levels, output_size=s["roi_size"],
                                             sampling_ratio=s["sampling_ratio"]),
            mask_head=head,
            mask_predictor=tv.MaskRCNNPredictor(s["layers"][-1] if s["layers"] else body.out_channels,
                                                s["dim_reduced"], self.num_classes + 1),
            **kwargs)

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        images, targets = batch
        if any("masks" not in t for t in targets):
            raise DataError("Mask R-CNN trains on instance masks, but the targets have none: "
                            "use data=shapes or data=coco with data.with_masks=true")
        losses = self.net(list(images), training_targets(targets, masks=True))
        return {"loss_rpn_obj": losses["loss_objectness"], "loss_rpn_box": losses["loss_rpn_box_reg"],
                "loss_cls": losses["loss_classifier"], "loss_box": losses["loss_box_reg"],
                "loss_mask": losses["loss_mask"]}

    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = self.net(list(images))
        # (N, 1, H, W) probabilities -> (N, H, W) uint8, the targets' form: a quarter of the
        # memory of floats for evaluate.py's kept predictions.
        return [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"],
                 "masks": (d["masks"][:, 0] >= self.mask_thresh).to(torch.uint8)} for d in out]
