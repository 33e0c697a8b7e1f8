"""Convolution followed by normalisation and an activation, the building brick of most
CNNs (Darknet's conv-BN-LeakyReLU, VGG-BN's and the captioner's conv-BN-ReLU,
MobileNet's conv-BN-ReLU6)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from zoo.layers import Example, _randn
from zoo.registry import buildable

NormFactory = Callable[[int], nn.Module]
ActFactory = Callable[[], nn.Module]


@buildable
class ConvNormAct(nn.Sequential):
    """``Conv2d(k, stride, padding k // 2 * dilation) -> norm(cout) -> act()`` as one
    ``nn.Sequential``, so its parameters are named ``0.weight`` (the convolution),
    ``1.weight``/``1.bias``/``1.running_*`` (the norm), exactly as a hand-written
    ``nn.Sequential(conv, bn, act)`` and torchvision's ``Conv2dNormActivation``.

    ``norm`` builds the normalisation from the channel count (default BatchNorm2d; None
    for none, and the convolution then gets a bias); ``act`` builds the activation
    (default ReLU; None for a linear output). "Same" padding keeps the spatial size at
    stride 1.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, dilation: int = 1,
                 norm: NormFactory | None = nn.BatchNorm2d,
                 act: ActFactory | None = nn.ReLU, bias: bool | None = None) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2 * dilation,
                      dilation=dilation, groups=groups,
                      bias=norm is None if bias is None else bias)]  # a norm has its own shift
        if norm is not None:
            layers.append(norm(cout))
        if act is not None:
            layers.append(act())
        super().__init__(*layers)

    @classmethod
    def example(cls) -> Example:
        return Example(cls(3, 8, 3, stride=2), (_randn(2, 3, 9, 9),), (2, 8, 5, 5))


def leaky_relu(slope: float = 0.1) -> ActFactory:
    """Darknet's activation: LeakyReLU with negative slope 0.1."""
    return lambda: nn.LeakyReLU(slope, inplace=True)
