"""SegNet (Badrinarayanan, Kendall, Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", TPAMI 2017).

The difference from FCN is in how the decoder upsamples. FCN *learns* its upsampling
(transposed convolutions) and adds 1x1 class scores of the encoder's feature maps, so it
keeps those maps and learns extra weights for each fusion. SegNet's encoder remembers
only *where* each 2x2 max came from (the pooling indices, 2 bits per window); the decoder
puts every value back at that position with ``MaxUnpool2d`` (zeros elsewhere) — a sparse,
parameter-free upsampling that restores boundary positions — and dense convolutions
fill in the rest. The upsampling layers therefore have no parameters at all
(``upsampling_parameters() == 0``; at the default configs FCN-8s spends 5,384 of its
957,308 parameters on transposed convolutions and skip scores, and grows with every class
since it upsamples class scores), and no encoder feature map is carried to the decoder,
only indices. SegNet's 959,636 parameters are all convolutions that see features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.errors import UserError
from zoo.layers.conv import ConvNormAct
from zoo.models.segmentation.base import SemanticSegmenter


class SegNet(SemanticSegmenter):
    """Encoder stages of ``convs[i]`` 3x3 conv-BN-ReLU at ``widths[i]`` then 2x2 max
    pooling with indices; the mirrored decoder unpools with those indices then convolves
    (the paper: VGG-16's 13 convolutions, widths 64..512)."""

    def __init__(self, *, num_classes: int, in_channels: int = 3,
                 widths: Sequence[int] = (16, 32, 64, 128), convs: Sequence[int] = (2, 2, 3, 3),
                 **loss: Any) -> None:
        super().__init__(num_classes=num_classes, **loss)
        if len(widths) != len(convs) or not widths:
            raise UserError("model.widths and model.convs need the same number of stages")
        self.encoder = nn.ModuleList()
        cin = in_channels
        for w, n in zip(widths, convs):
            self.encoder.append(nn.Sequential(*[ConvNormAct(cin if j == 0 else w, w, 3) for j in range(n)]))
            cin = w
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decoder = nn.ModuleList()
        outs = list(widths[:-1])[::-1] + [widths[0]]     # stage i decodes to the width above it
        for w, n, out in zip(list(widths)[::-1], list(convs)[::-1], outs):
            layers = [ConvNormAct(w, w, 3) for _ in range(n - 1)] + [ConvNormAct(w, out, 3)]
            self.decoder.append(nn.Sequential(*layers))
        self.head = nn.Conv2d(widths[0], num_classes, 3, padding=1)
        self.stride = 2 ** len(widths)

    def upsampling_parameters(self) -> int:
        """Parameters of the upsampling layers: 0 (MaxUnpool2d only moves values)."""
        return sum(p.numel() for p in self.unpool.parameters())

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        indices, sizes = [], []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, idx = self.pool(x)                  # idx: argmax position of each 2x2 window
            indices.append(idx)
        for stage in self.decoder:
            x = self.unpool(x, indices.pop(), output_size=sizes.pop())
            x = stage(x)
        return self.head(x), None
