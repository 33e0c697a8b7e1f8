"""Small convolutional backbones sized for CPU training, shared by the detectors.

:class:`DarknetBackbone` follows Darknet-19 (YOLOv2 paper, Table 6): 3x3 convolutions
with BatchNorm and leaky ReLU, 2x2 max-pooling between stages, and from the fourth stage
on the 3x3 - 1x1 - 3x3 bottleneck that halves channels in the middle. Widths are
configurable so the same code gives a 0.3 M-parameter CPU backbone or the full
32..1024 network. Its stages are plain named children, so torchvision's
``IntermediateLayerGetter`` / ``BackboneWithFPN`` can tap them for Faster R-CNN.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from zoo.layers.conv import ConvNormAct, leaky_relu


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1) -> ConvNormAct:
    """Conv (no bias: BatchNorm has one) + BatchNorm + LeakyReLU(0.1), as in Darknet."""
    return ConvNormAct(cin, cout, k, stride, norm=nn.BatchNorm2d, act=leaky_relu(0.1))


class DarknetBackbone(nn.Sequential):
    """Darknet-19-style stages ``stage0..stage{n-1}``; stage ``i`` has stride
    ``stem_stride * 2**i``.

    ``forward`` returns the last stage; :meth:`features` returns every stage's output,
    e.g. for 128 px input, ``stem_stride=2`` and widths (16, 32, 64, 128):
    (B, 16, 64, 64) ... (B, 128, 8, 8). A stride-2 stem convolution replaces Darknet's
    full-resolution convolution + max-pool: on a CPU those two are a third of the
    training time for little accuracy at small inputs.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), in_channels: int = 3,
                 bottleneck_from: int = 3, stem_stride: int = 2) -> None:
        stages: "OrderedDict[str, nn.Module]" = OrderedDict()
        cin = in_channels
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [nn.MaxPool2d(2, 2)] if i > 0 else []
            layers.append(conv_bn_act(cin, w, 3, stem_stride if i == 0 else 1))
            if i >= bottleneck_from:  # Darknet-19's 3x3-1x1-3x3 from its 128-wide stage on
                layers += [conv_bn_act(w, w // 2, 1), conv_bn_act(w // 2, w, 3)]
            stages[f"stage{i}"] = nn.Sequential(*layers)
            cin = w
        super().__init__(stages)
        self.out_channels = list(widths)
        self.strides = [stem_stride * 2 ** i for i in range(len(widths))]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self:
            x = stage(x)
            out.append(x)
        return out
