"""FCN (Long, Shelhamer, Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015), written as in the paper: a VGG-style encoder whose fully
connected layers are convolutions (fc6, fc7), 1x1 class scores, and learned
transposed-convolution upsampling (initialised to bilinear interpolation) fused with
1x1 scores of earlier pooling stages:

* FCN-32s: conv7 scores upsampled 32x in one step;
* FCN-16s: conv7 scores up 2x + pool4 scores, then up 16x;
* FCN-8s:  ... up 2x + pool3 scores, then up 8x (the default).

The skip scores start at zero (the paper's initialisation), so training starts from the
coarser net's output. ``dilated: true`` replaces the last pooling by dilation 2 in stage 5
and fc6 (atrous convolution, DeepLab's trick): conv7 stays at stride 16 and fuses with
pool4 without upsampling. Sized for small images: 3x3 fc6 instead of 7x7 and narrow
stages (the paper's VGG-16 is 64..512 wide with 4096-wide fc layers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zoo.layers.conv import ConvNormAct
from zoo.models.segmentation.base import SemanticSegmenter


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """(C, C, k, k) weights of a transposed convolution that upsamples each channel by
    bilinear interpolation, channels kept apart (the FCN initialisation)."""
    factor = (kernel_size + 1) // 2
    centre = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt = 1 - (og - centre).abs() / factor
    k2 = filt[:, None] * filt[None, :]
    w = torch.zeros(channels, channels, kernel_size, kernel_size)
    w[range(channels), range(channels)] = k2
    return w


def upsampler(channels: int, factor: int) -> nn.Module:
    """Learned x``factor`` upsampling: ConvTranspose2d(k = 2f, stride f, pad f/2), so an
    n-pixel side becomes exactly n*f; initialised to bilinear interpolation."""
    if factor == 1:
        return nn.Identity()
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, factor, factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


class FCN(SemanticSegmenter):
    """FCN-32s/16s/8s (``variant``) on a five-stage VGG-style encoder (``widths``,
    ``convs`` per stage), fc6/fc7 as ``fc_width``-wide convolutions."""

    def __init__(self, *, num_classes: int, variant: str = "8s", in_channels: int = 3,
                 widths: Sequence[int] = (16, 32, 64, 128, 128), convs: Sequence[int] = (2, 2, 2, 2, 2),
                 fc_width: int = 256, dilated: bool = False, dropout: float = 0.1, **loss: object) -> None:
        super().__init__(num_classes=num_classes, **loss)  # type: ignore[arg-type]
        if variant not in ("8s", "16s", "32s"):
            from zoo.errors import UserError

            raise UserError(f"model.variant={variant} is not one of 8s, 16s, 32s")
        if len(widths) != 5 or len(convs) != 5:
            from zoo.errors import UserError

            raise UserError("FCN has five encoder stages: model.widths and model.convs need 5 values each")
        self.variant, self.dilated = variant, bool(dilated)
        stages, cin, self.stage_strides = [], in_channels, []
        stride = 1
        for i, (w, n) in enumerate(zip(widths, convs)):
            last_dilated = self.dilated and i == 4
            d = 2 if last_dilated else 1
            layers: list[nn.Module] = [ConvNormAct(cin if j == 0 else w, w, 3, dilation=d) for j in range(n)]
            if not last_dilated:
                layers.append(nn.MaxPool2d(2, 2))
                stride *= 2
            stages.append(nn.Sequential(*layers))
            self.stage_strides.append(stride)
            cin = w
        self.stages = nn.ModuleList(stages)
        d = 2 if self.dilated else 1
        self.fc = nn.Sequential(ConvNormAct(cin, fc_width, 3, dilation=d), nn.Dropout2d(dropout),
                                ConvNormAct(fc_width, fc_width, 1), nn.Dropout2d(dropout))
        self.score_fr = nn.Conv2d(fc_width, num_classes, 1)
        # skip sources by variant: pool4 (stage index 3), pool3 (index 2)
        self.skips = {"32s": [], "16s": [3], "8s": [3, 2]}[variant]
        self.score_skip = nn.ModuleDict({str(i): nn.Conv2d(widths[i], num_classes, 1) for i in self.skips})
        for conv in self.score_skip.values():
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.up_skip = nn.ModuleDict()
        cur = self.stage_strides[4]
        for i in self.skips:
            self.up_skip[str(i)] = upsampler(num_classes, cur // self.stage_strides[i])
            cur = self.stage_strides[i]
        self.up_final = upsampler(num_classes, cur)
        self.stride = self.stage_strides[4]

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)                        # stage i at stride stage_strides[i]
        score = self.score_fr(self.fc(x))          # (B, K, H/32, W/32), H/16 when dilated
        for i in self.skips:
            score = self.up_skip[str(i)](score) + self.score_skip[str(i)](feats[i])
        return self.up_final(score), None
