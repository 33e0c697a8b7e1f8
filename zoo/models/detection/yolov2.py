"""YOLOv2 written by hand (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", 2017).

What it adds to YOLOv1, and where it lives here:
- anchor priors from k-means on the training boxes with distance 1 - IoU
  (:func:`~zoo.models.detection.boxes.kmeans_anchors`, run in ``on_train_start`` and
  saved in the run as ``anchors.json`` and in the checkpoint as a buffer);
- direct location prediction: centre ``(sigmoid(t_x) + c_x) * stride`` stays inside its
  cell, size ``p_w * exp(t_w)`` scales the prior;
- an objectness score per anchor and class probabilities per anchor;
- the passthrough ("reorg") layer that stacks the stride/2 features into channels;
- multi-scale training: every few steps the input side changes to another multiple of
  the stride (the network is fully convolutional).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError
from zoo.models.detection.backbones import DarknetBackbone, conv_bn_act
from zoo.models.detection.base import Detector, resize_batch, training_targets
from zoo.models.detection.boxes import box_iou, cell_of, kmeans_anchors, select_unique, wh_iou

# Relative (w, h) priors used until k-means replaces them: k-means on the default shapes
# training split (fractions of the image side).
DEFAULT_ANCHORS = [[0.08, 0.08], [0.15, 0.15], [0.25, 0.24], [0.37, 0.38], [0.55, 0.5]]


class Reorg(nn.Module):
    """Passthrough layer: (B, C, H, W) -> (B, C*s*s, H/s, W/s), each s x s neighbourhood
    moved into channels so fine features can be concatenated with coarse ones."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, self.stride)


class YOLOv2(Detector):
    """YOLOv2 (YOLO9000 paper) on a Darknet-19-style backbone; see the module docstring.

    Args:
        num_classes: K object classes.
        image_size: input side (a multiple of the stride ``2**len(widths)``).
        widths: backbone stage widths; the last stage's stride is the grid stride.
        anchors: (A, 2) prior sizes as fractions of the input side; replaced by k-means
            on the training boxes when ``kmeans_anchors`` is true.
        head_width: channels of the detection head convolutions.
        passthrough_width: channels of the stride/2 features before the reorg.
        multiscale: ``[min, max]`` input sides for multi-scale training, or null.
        multiscale_every: optimizer steps between input-side changes.
        lambda_coord, lambda_obj, lambda_noobj, lambda_cls: loss weights.
        ignore_thresh: an anchor whose box overlaps a true box by more than this is not
            pushed towards "no object" (it is a near-duplicate, not a background).
        rescore: objectness target is the IoU of the predicted box (paper) instead of 1.
    """

    def __init__(self, *, num_classes: int, image_size: int = 128,
                 widths: Sequence[int] = (24, 48, 96, 192),
                 anchors: Sequence[Sequence[float]] = DEFAULT_ANCHORS, kmeans_anchors: bool = True,
                 kmeans_images: int = 500, head_width: int = 192, passthrough_width: int = 32,
                 multiscale: Sequence[int] | None = None, multiscale_every: int = 10,
                 lambda_coord: float = 1.0, lambda_obj: float = 1.0, lambda_noobj: float = 1.0,
                 lambda_cls: float = 1.0, ignore_thresh: float = 0.6, rescore: bool = False,
                 score_thresh: float = 0.01, nms_thresh: float = 0.45,
                 detections_per_img: int = 100) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, score_thresh=score_thresh,
                         nms_thresh=nms_thresh, detections_per_img=detections_per_img)
        self.backbone = DarknetBackbone(widths)
        self.stride = self.backbone.strides[-1]
        if image_size % self.stride:
            raise UserError(f"YOLOv2 image_size {image_size} is not a multiple of its stride "
                            f"{self.stride}; use e.g. {image_size // self.stride * self.stride or self.stride}")
        self.kmeans = bool(kmeans_anchors)
        self.kmeans_images = int(kmeans_images)
        self.multiscale = list(multiscale) if multiscale else None
        self.multiscale_every = int(multiscale_every)
        self.lambda_coord, self.lambda_obj = float(lambda_coord), float(lambda_obj)
        self.lambda_noobj, self.lambda_cls = float(lambda_noobj), float(lambda_cls)
        self.ignore_thresh, self.rescore = float(ignore_thresh), bool(rescore)
        # Buffers travel in checkpoints: prediction needs the fitted anchors, and the step
        # count keeps the multi-scale schedule exact across resumes.
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).reshape(-1, 2))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.num_anchors = len(self.anchors)

        c_last, c_prev = widths[-1], widths[-2]
        self.head = nn.Sequential(conv_bn_act(c_last, head_width, 3),
                                  conv_bn_act(head_width, head_width, 3))
        self.passthrough = nn.Sequential(conv_bn_act(c_prev, passthrough_width, 1), Reorg(2))
        self.fuse = conv_bn_act(head_width + 4 * passthrough_width, head_width, 3)
        self.out = nn.Conv2d(head_width, self.num_anchors * (5 + num_classes), 1)
        with torch.no_grad():  # start with low objectness: most anchors see background
            self.out.bias.view(self.num_anchors, -1)[:, 4].fill_(-4.0)

    # -- network ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, A, H/s, W/s, 5 + K) raw outputs (t_x, t_y, t_w, t_h, t_o, logits)."""
        feats = self.backbone.features(x)
        y = torch.cat([self.head(feats[-1]), self.passthrough(feats[-2])], 1)
        y = self.out(self.fuse(y))
        b, _, h, w = y.shape
        return y.view(b, self.num_anchors, 5 + self.num_classes, h, w).permute(0, 1, 3, 4, 2)

    def decode_boxes(self, raw: torch.Tensor, size: int) -> torch.Tensor:
        """(B, A, S, S, >=4) raw -> (B, A, S, S, 4) xyxy boxes in input pixels."""
        s = raw.shape[2]
        stride = size / s
        ys, xs = torch.meshgrid(torch.arange(s, device=raw.device), torch.arange(s, device=raw.device),
                                indexing="ij")
        cx = (raw[..., 0].sigmoid() + xs) * stride
        cy = (raw[..., 1].sigmoid() + ys) * stride
        prior = (self.anchors * size).view(1, -1, 1, 1, 2)
        wh = prior * raw[..., 2:4].clamp(-10, 6).exp()  # clamp keeps exp finite early on
        return torch.stack([cx - wh[..., 0] / 2, cy - wh[..., 1] / 2,
                            cx + wh[..., 0] / 2, cy + wh[..., 1] / 2], -1)

    def encode(self, boxes: torch.Tensor, size: int, grid: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Slots and regression targets of true boxes (N, 4) in input pixels: anchor index,
        cell row, cell col, target (N, 4) = (sigmoid(t_x), sigmoid(t_y), t_w, t_h)."""
        row, col, off = cell_of(boxes, grid, size)
        wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)
        a = wh_iou(wh, self.anchors * size).argmax(1)  # best prior by shape alone
        twh = torch.log(wh / (self.anchors[a] * size))
        return a, row, col, torch.cat([off, twh], 1), wh

    # -- training --------------------------------------------------------------------------
    def input_size(self) -> int:
        """The training input side at the current step (fixed unless multi-scale)."""
        if not (self.training and self.multiscale):
            return self.image_size
        lo, hi = self.multiscale
        first = max(self.stride, -(-int(lo) // self.stride) * self.stride)  # lo rounded up
        choices = list(range(first, int(hi) + 1, self.stride)) or [self.image_size]
        period = int(self.steps) // self.multiscale_every
        g = torch.Generator().manual_seed(period)  # a function of the step: exact on resume
        return choices[int(torch.randint(len(choices), (1,), generator=g))]

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        images, targets = batch
        size = self.input_size()
        x, scales = resize_batch(images, size)
        raw = self(x)
        if self.training:
            self.steps += 1
        targets = training_targets(targets)
        boxes = [t["boxes"] * scales[i].repeat(2) for i, t in enumerate(targets)]
        return self.loss(raw, boxes, [t["labels"] for t in targets], size)

    def loss(self, raw: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor],
             size: int) -> dict[str, torch.Tensor]:
        """The region loss, summed over the batch and divided by the batch size.

        Responsible slot of a true box: the cell holding its centre and the prior of best
        shape IoU. Box: squared error on (sigmoid(t_x), sigmoid(t_y), t_w, t_h), weighted
        by ``2 - w*h`` (relative size) so small boxes count more. Objectness: binary cross
        entropy, towards 1 (or the predicted box's IoU) at responsible slots and towards 0
        at slots that overlap no true box by more than ``ignore_thresh``. Classes: cross
        entropy at responsible slots."""
        b, a, s, _, _ = raw.shape
        pred_boxes = self.decode_boxes(raw.detach(), size)  # (B, A, S, S, 4)
        obj_target = torch.zeros(raw.shape[:4], device=raw.device)
        # Responsible slots, kept apart from the target: with rescore a slot whose box misses
        # its object (IoU 0) has target 0 and must still be pushed there.
        responsible = torch.zeros(raw.shape[:4], dtype=torch.bool, device=raw.device)
        noobj = torch.ones(raw.shape[:4], dtype=torch.bool, device=raw.device)
        idx, box_t, cls_t, scale = [], [], [], []
        for i in range(b):
            g = boxes[i]
            if len(g) == 0:
                continue
            best_iou = box_iou(pred_boxes[i].reshape(-1, 4), g).max(1).values.view(a, s, s)
            noobj[i] &= best_iou <= self.ignore_thresh
            an, row, col, t, wh = self.encode(g, size, s)
            keep = select_unique((an * s + row) * s + col, wh.prod(1))  # one box per slot
            an, row, col, t, g_k = an[keep], row[keep], col[keep], t[keep], g[keep]
            noobj[i, an, row, col] = False
            responsible[i, an, row, col] = True
            iou = box_iou(pred_boxes[i, an, row, col], g_k).diagonal()
            obj_target[i, an, row, col] = iou.clamp(min=0) if self.rescore else 1.0
            idx.append(torch.stack([torch.full_like(an, i), an, row, col], 1))
            box_t.append(t)
            cls_t.append(labels[i][keep] - 1)
            scale.append(2 - (wh[keep].prod(1) / size ** 2))
        zero = raw.sum() * 0
        if idx:
            ix = torch.cat(idx)
            p = raw[ix[:, 0], ix[:, 1], ix[:, 2], ix[:, 3]]  # (P, 5 + K)
            t = torch.cat(box_t)
            se = (p[:, :2].sigmoid() - t[:, :2]).pow(2).sum(1) + (p[:, 2:4] - t[:, 2:4]).pow(2).sum(1)
            loss_box = self.lambda_coord * (torch.cat(scale) * se).sum()
            loss_cls = self.lambda_cls * F.cross_entropy(p[:, 5:], torch.cat(cls_t), reduction="sum")
            loss_obj = self.lambda_obj * F.binary_cross_entropy_with_logits(
                raw[..., 4][responsible], obj_target[responsible], reduction="sum")
        else:
            loss_box = loss_cls = loss_obj = zero
        loss_noobj = self.lambda_noobj * F.binary_cross_entropy_with_logits(
            raw[..., 4][noobj], torch.zeros_like(raw[..., 4][noobj]), reduction="sum")
        return {"loss_box": loss_box / b, "loss_obj": loss_obj / b,
                "loss_noobj": loss_noobj / b, "loss_cls": loss_cls / b}

    def on_train_start(self, data: Any, run_dir: str) -> None:
        """Fit the anchor priors to the training boxes (k-means, 1 - IoU) and save them."""
        super().on_train_start(data, run_dir)
        if not self.kmeans:
            return
        ds = data.dataset("train")
        if not hasattr(ds, "box_sizes"):
            return
        wh = ds.box_sizes(self.kmeans_images)
        if len(wh) < self.num_anchors:
            return  # too few boxes to fit; keep the configured priors
        anchors = kmeans_anchors(wh, self.num_anchors, seed=0)
        self.anchors.copy_(anchors.to(self.anchors))
        mean_iou = float(wh_iou(wh.double(), anchors.double()).max(1).values.mean())
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "anchors.json").write_text(json.dumps(
            {"anchors_wh_relative": [[round(v, 5) for v in r] for r in anchors.tolist()],
             "mean_best_iou": round(mean_iou, 4), "num_boxes": len(wh)}, indent=1))

    # -- inference -------------------------------------------------------------------------
    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        size = self.image_size
        x, scales = resize_batch(images, size)
        raw = self(x)
        boxes = self.decode_boxes(raw, size).reshape(len(images), -1, 4)
        scores = raw[..., 4:5].sigmoid() * raw[..., 5:].softmax(-1)  # P(obj) * P(class | obj)
        scores = scores.reshape(len(images), -1, self.num_classes)
        return self.finish(boxes, scores, images, scales)
