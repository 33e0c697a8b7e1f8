"""YOLOv1 written by hand (Redmon et al., "You Only Look Once: Unified, Real-Time Object
Detection", CVPR 2016).

The image is divided into an S x S grid. The cell that holds an object's centre is
responsible for it: each cell predicts B boxes ``(x, y, sqrt(w), sqrt(h), confidence)``
and one set of class probabilities ``P(class | object)`` shared by its boxes. The
network is convolutional features followed by fully connected layers that see the
whole image, and the loss is a plain sum of squared errors:

    lambda_coord * sum_{obj, resp} (x - x*)^2 + (y - y*)^2 + (sqrt w - sqrt w*)^2 + (sqrt h - sqrt h*)^2
  + sum_{obj, resp} (C - IoU(pred, truth))^2
  + lambda_noobj * sum_{other boxes} C^2
  + sum_{cells with obj} sum_c (p(c) - p*(c))^2

with lambda_coord = 5 and lambda_noobj = 0.5: most boxes see no object, and without
the down-weighting their confidence gradients would swamp the rest. Square roots of
width and height make an error on a small box cost more than the same error on a big
one. x, y are the centre's offset inside its cell; w, h are fractions of the image.
Of a cell's B boxes, the one whose current prediction overlaps the truth most is
"responsible"; only it learns the coordinates. At test time a box's class-specific
score is ``confidence * P(class | object)``.

The paper's outputs are linear; here box coordinates and confidence pass through a
sigmoid and class scores through a softmax, because every target lives in [0, 1] (or
on the simplex) and the bounded outputs train from scratch faster and without NaN
square roots. The sum-squared loss itself is unchanged.

``head="fc"`` is the paper's fully connected head: every output sees the whole image,
but its weights must learn where each cell is, which the paper could afford after a
week of ImageNet pre-training of the convolutions. From scratch on a CPU it stays at
the mean prediction for thousands of steps, so the default ``head="conv"`` predicts
each cell's vector with a 3x3 then 1x1 convolution over the S x S features (the
grid, boxes, class probabilities and loss are the paper's).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from zoo.errors import UserError
from zoo.models.detection.backbones import DarknetBackbone, conv_bn_act
from zoo.models.detection.base import Detector, resize_batch, training_targets
from zoo.models.detection.boxes import box_iou, cell_of, select_unique


def yolov1_encode(boxes: torch.Tensor, grid: int, size: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                       torch.Tensor]:
    """True boxes (N, 4) xyxy in an image of side ``size`` -> cell (row, col) and the
    regression target (N, 4) = (x offset in cell, y offset, sqrt(w / size), sqrt(h / size))."""
    row, col, off = cell_of(boxes, grid, size)
    wh = ((boxes[:, 2:] - boxes[:, :2]) / size).clamp(min=0)
    return row, col, torch.cat([off, wh.sqrt()], 1)


def yolov1_decode(box_params: torch.Tensor, size: float) -> torch.Tensor:
    """(..., S, S, B, 4) ``(x, y, sqrt w, sqrt h)`` -> (..., S, S, B, 4) xyxy pixels."""
    s = box_params.shape[-3]
    ys, xs = torch.meshgrid(torch.arange(s, device=box_params.device),
                            torch.arange(s, device=box_params.device), indexing="ij")
    cx = (box_params[..., 0] + xs[..., None]) / s * size
    cy = (box_params[..., 1] + ys[..., None]) / s * size
    w = box_params[..., 2].pow(2) * size
    h = box_params[..., 3].pow(2) * size
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def yolov1_loss(pred: torch.Tensor, boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                *, num_boxes: int, size: int, lambda_coord: float = 5.0,
                lambda_noobj: float = 0.5) -> dict[str, torch.Tensor]:
    """The YOLOv1 sum-squared loss (module docstring), divided by the batch size.

    ``pred`` (N, S, S, 5B + C) holds activated outputs: per box ``(x, y, sqrt w, sqrt h,
    confidence)`` then the cell's class probabilities. ``boxes[i]`` (M, 4) xyxy in input
    pixels, ``labels[i]`` (M,) in 1..C. A cell holds at most one object: of several
    centres in one cell the largest box is kept (the paper's limit on close objects).
    """
    n, s = pred.shape[:2]
    nb = num_boxes
    box_p = pred[..., :5 * nb].reshape(n, s, s, nb, 5)  # (N, S, S, B, 5)
    cls_p = pred[..., 5 * nb:]  # (N, S, S, C)
    resp = torch.zeros(n, s, s, nb, dtype=torch.bool, device=pred.device)
    coord_t = torch.zeros(n, s, s, nb, 4, device=pred.device)
    conf_t = torch.zeros(n, s, s, nb, device=pred.device)
    cls_t = torch.zeros_like(cls_p)
    has_obj = torch.zeros(n, s, s, dtype=torch.bool, device=pred.device)
    decoded = yolov1_decode(box_p[..., :4].detach(), size)  # (N, S, S, B, 4)
    for i in range(n):
        g = boxes[i]
        if len(g) == 0:
            continue
        row, col, t = yolov1_encode(g, s, size)
        keep = select_unique(row * s + col, (g[:, 2:] - g[:, :2]).prod(1))
        row, col, t, g, lab = row[keep], col[keep], t[keep], g[keep], labels[i][keep]
        ious = torch.stack([box_iou(decoded[i, row, col, b], g).diagonal() for b in range(nb)], 1)
        best = ious.argmax(1)  # responsible predictor: highest IoU with the truth
        resp[i, row, col, best] = True
        coord_t[i, row, col, best] = t
        conf_t[i, row, col, best] = ious.gather(1, best[:, None]).squeeze(1)
        has_obj[i, row, col] = True
        cls_t[i, row, col, lab - 1] = 1.0
    se_coord = (box_p[..., :4] - coord_t).pow(2).sum(-1)
    loss_box = lambda_coord * se_coord[resp].sum()
    loss_obj = (box_p[..., 4] - conf_t)[resp].pow(2).sum()
    loss_noobj = lambda_noobj * box_p[..., 4][~resp].pow(2).sum()
    loss_cls = (cls_p - cls_t)[has_obj].pow(2).sum()
    return {"loss_box": loss_box / n, "loss_obj": loss_obj / n, "loss_noobj": loss_noobj / n,
            "loss_cls": loss_cls / n}


class YOLOv1(Detector):
    """YOLOv1 (Redmon et al., 2016): S x S grid, B boxes per cell, per-cell class
    probabilities, fully connected detection head, sum-squared loss (module docstring).

    Args:
        num_classes: C object classes.
        image_size: input side.
        grid_size: S. The paper uses 7 at 448 px; 8 at 128 px keeps cells of 16 px.
        num_boxes: B boxes per cell (paper: 2).
        widths: convolutional backbone widths (Darknet-style stages).
        head: ``conv`` (default) or ``fc`` (the paper's; see the module docstring).
        head_channels: channels per cell fed to the fully connected head.
        fc_width: hidden units of the fully connected layer (paper: 4096).
        dropout: dropout after it (paper: 0.5).
        lambda_coord, lambda_noobj: the paper's 5 and 0.5.
    """

    def __init__(self, *, num_classes: int, image_size: int = 128, grid_size: int = 8,
                 num_boxes: int = 2, widths: Sequence[int] = (24, 48, 96, 192),
                 head: str = "conv", head_channels: int = 64, fc_width: int = 512, dropout: float = 0.5,
                 lambda_coord: float = 5.0, lambda_noobj: float = 0.5,
                 score_thresh: float = 0.01, nms_thresh: float = 0.45,
                 detections_per_img: int = 100) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, score_thresh=score_thresh,
                         nms_thresh=nms_thresh, detections_per_img=detections_per_img)
        self.grid_size, self.num_boxes = int(grid_size), int(num_boxes)
        self.lambda_coord, self.lambda_noobj = float(lambda_coord), float(lambda_noobj)
        self.backbone = DarknetBackbone(widths)
        c = widths[-1]
        # (N, C, H/s, W/s) -> (N, C, S, S): the grid, whatever the input size.
        self.neck = nn.Sequential(conv_bn_act(c, c, 3), nn.AdaptiveAvgPool2d(grid_size))
        per_cell = 5 * num_boxes + num_classes
        if head == "fc":
            self.head = nn.Sequential(
                conv_bn_act(c, head_channels, 1),
                nn.Flatten(),
                nn.Linear(head_channels * grid_size * grid_size, fc_width),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Dropout(dropout),
                nn.Linear(fc_width, grid_size * grid_size * per_cell),
            )
        elif head == "conv":
            self.head = nn.Sequential(conv_bn_act(c, c, 3), nn.Conv2d(c, per_cell, 1))
        else:
            raise UserError(f"unknown YOLOv1 head '{head}'; valid: conv, fc")
        self.head_kind = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, S, S, 5B + C) activated outputs."""
        s, nb = self.grid_size, self.num_boxes
        y = self.head(self.neck(self.backbone(x)))  # (N, S*S*(5B+C)) or (N, 5B+C, S, S)
        y = y.view(x.shape[0], s, s, -1) if self.head_kind == "fc" else y.permute(0, 2, 3, 1)
        return torch.cat([y[..., :5 * nb].sigmoid(), y[..., 5 * nb:].softmax(-1)], -1)

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        images, targets = batch
        x, scales = resize_batch(images, self.image_size)
        pred = self(x)
        targets = training_targets(targets)
        boxes = [t["boxes"] * scales[i].repeat(2) for i, t in enumerate(targets)]
        return yolov1_loss(pred, boxes, [t["labels"] for t in targets], num_boxes=self.num_boxes,
                           size=self.image_size, lambda_coord=self.lambda_coord,
                           lambda_noobj=self.lambda_noobj)

    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        x, scales = resize_batch(images, self.image_size)
        pred = self(x)
        n, s, nb = len(images), self.grid_size, self.num_boxes
        box_p = pred[..., :5 * nb].reshape(n, s, s, nb, 5)
        boxes = yolov1_decode(box_p[..., :4], self.image_size).reshape(n, -1, 4)
        # class-specific confidence: P(class | object) * confidence, (N, S*S*B, C)
        scores = (box_p[..., 4:5] * pred[..., None, 5 * nb:]).reshape(n, -1, self.num_classes)
        return self.finish(boxes, scores, images, scales)
