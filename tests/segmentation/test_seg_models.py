"""The semantic segmenters: logits at the input's size for odd and even sizes, SegNet's
index unpooling, PSPNet's pyramid and auxiliary head, FCN's variants and bilinear start."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.errors import UserError
from zoo.models.segmentation.base import mirror_pad_predict
from zoo.models.segmentation.fcn import FCN, bilinear_kernel, upsampler
from zoo.models.segmentation.pspnet import PSPNet
from zoo.models.segmentation.segnet import SegNet
from zoo.models.segmentation.unet import UNet

SMALL = {
    "fcn": lambda **k: FCN(widths=(4, 4, 8, 8, 8), convs=(1, 1, 1, 1, 1), fc_width=8, **k),
    "fcn16": lambda **k: FCN(variant="16s", widths=(4, 4, 8, 8, 8), convs=(1, 1, 1, 1, 1), fc_width=8, **k),
    "fcn32": lambda **k: FCN(variant="32s", widths=(4, 4, 8, 8, 8), convs=(1, 1, 1, 1, 1), fc_width=8, **k),
    "fcn_dilated": lambda **k: FCN(dilated=True, widths=(4, 4, 8, 8, 8), convs=(1, 1, 1, 1, 1), fc_width=8, **k),
    "unet": lambda **k: UNet(depth=3, width=4, **k),
    "unet_bilinear": lambda **k: UNet(depth=3, width=4, upsampling="bilinear", **k),
    "segnet": lambda **k: SegNet(widths=(4, 8, 8), convs=(1, 1, 2), **k),
    "pspnet": lambda **k: PSPNet(widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1), head_width=8, **k),
    "pspnet16": lambda **k: PSPNet(widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1), head_width=8,
                                   output_stride=16, **k),
}


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("size", [(32, 32), (33, 47), (20, 9), (1, 1)])
def test_logits_have_the_input_size(name, size):
    torch.manual_seed(0)
    model = SMALL[name](num_classes=3).eval()
    x = torch.rand(2, 3, *size)
    out = model.predict(x)
    assert out.shape == (2, 3, *size)
    model.train()
    losses = model.training_step((x, torch.randint(0, 3, (2, *size))))
    assert all(torch.isfinite(v) for v in losses.values())


def test_segnet_unpools_values_at_the_pooled_positions():
    torch.manual_seed(0)
    model = SegNet(num_classes=2, widths=(3,), convs=(1,))
    x = torch.randn(1, 3, 6, 8)
    pooled, idx = model.pool(x)
    up = model.unpool(pooled, idx, output_size=x.shape[-2:])
    # every 2x2 window: its maximum back at the argmax, zeros at the other three
    windows = F.unfold(x, 2, stride=2)                       # (1, 3*4, 12)
    up_windows = F.unfold(up, 2, stride=2)
    wx, wu = windows.view(3, 4, -1), up_windows.view(3, 4, -1)
    arg = wx.argmax(1, keepdim=True)
    assert torch.equal(wu.gather(1, arg), wx.gather(1, arg))
    assert int((wu != 0).sum(1).max()) == 1
    assert torch.equal(up.flatten(2).gather(2, idx.flatten(2)), pooled.flatten(2))


def test_segnet_decoder_upsamples_by_the_encoder_indices():
    torch.manual_seed(0)
    model = SegNet(num_classes=2, widths=(4, 4), convs=(1, 1)).eval()
    seen = []
    model.unpool.register_forward_hook(lambda m, args, out: seen.append((args[1], out)))
    model(torch.rand(1, 3, 16, 12))
    assert len(seen) == 2                  # one unpooling per encoder stage
    for idx, out in seen:
        # each output holds values only at the recorded argmax positions
        nonzero = out.flatten(2) != 0
        at = torch.zeros_like(nonzero).scatter_(2, idx.flatten(2), True)
        assert not (nonzero & ~at).any()


def test_segnet_upsampling_has_no_parameters_unlike_fcn():
    segnet = SegNet(num_classes=4)
    fcn = FCN(num_classes=4)
    assert segnet.upsampling_parameters() == 0
    fcn_up = sum(p.numel() for n, p in fcn.named_parameters() if n.startswith(("up_", "score_skip")))
    assert fcn_up > 0
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in segnet.modules())


def test_pspnet_pyramid_bins_and_auxiliary_head():
    torch.manual_seed(0)
    model = PSPNet(num_classes=3, widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1), head_width=8)
    x = torch.rand(2, 3, 64, 48)
    c3, c4 = model.backbone(x)
    assert c4.shape[-2:] == (8, 6) and c3.shape[-2:] == (8, 6)       # output stride 8
    pooled = model.ppm.pooled(c4)
    assert [tuple(p.shape[-2:]) for p in pooled] == [(1, 1), (2, 2), (3, 3), (6, 6)]
    assert all(p.shape[1] == 16 // 4 for p in pooled)
    assert model.ppm(c4).shape == (2, 16 + 4 * 4, 8, 6)
    model.train()
    losses = model.training_step((x, torch.randint(0, 3, (2, 64, 48))))
    assert set(losses) == {"loss_seg", "loss_aux"}
    model.eval()
    assert model._run(x)[1] is None  # no auxiliary logits at inference
    no_aux = PSPNet(num_classes=3, widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1), head_width=8, aux_weight=0)
    assert set(no_aux.training_step((x, torch.randint(0, 3, (2, 64, 48))))) == {"loss_seg"}


def test_pspnet_backbone_is_dilated():
    model = PSPNet(num_classes=3, widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1))
    dil = [m.dilation for m in model.backbone.layer4.modules() if isinstance(m, torch.nn.Conv2d)
           and m.kernel_size == (3, 3)]
    assert dil and all(d == (4, 4) for d in dil)


def test_fcn_upsampling_starts_bilinear_and_skips_start_at_zero():
    up = upsampler(2, 8)
    x = torch.rand(1, 2, 5, 7)
    y = up(x)
    assert y.shape == (1, 2, 40, 56)
    ref = F.interpolate(x, scale_factor=8, mode="bilinear", align_corners=False)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from the zero-padded border
    assert torch.allclose(y[inner], ref[inner], atol=1e-5)
    assert bilinear_kernel(1, 4)[0, 0, 1, 1] == pytest.approx(0.5625)
    fcn = FCN(num_classes=3)
    assert all(float(c.weight.detach().abs().sum()) == 0 for c in fcn.score_skip.values())
    assert list(FCN(num_classes=3, variant="16s").score_skip) == ["3"]
    assert list(FCN(num_classes=3, variant="32s").score_skip) == []


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="variant"):
        FCN(num_classes=3, variant="4s")
    with pytest.raises(UserError, match="upsampling"):
        UNet(num_classes=3, upsampling="nearest")
    with pytest.raises(UserError, match="model.loss"):
        UNet(num_classes=3, loss="focal")
    with pytest.raises(UserError, match="class_weights"):
        UNet(num_classes=3, class_weights=[1.0, 2.0])


def test_mirror_padding_crops_back_and_tiles_agree():
    torch.manual_seed(0)
    model = UNet(num_classes=3, depth=2, width=4).eval()
    x = torch.rand(1, 3, 20, 28)
    direct = model(x)
    padded = mirror_pad_predict(model, x, 8)
    assert padded.shape == direct.shape
    # a pointwise function is unchanged by padding and tiling
    def pointwise(t):
        return t * 2 + 1

    assert torch.equal(mirror_pad_predict(pointwise, x, 4), pointwise(x))
    assert torch.equal(mirror_pad_predict(pointwise, x, 4, tile=8), pointwise(x))
    # the mirrored margin: the model sees reflected context, so a pixel next to the border is
    # predicted as in the reflect-padded image
    ref = model(F.pad(x, (8,) * 4, mode="reflect"))[..., 8:-8, 8:-8]
    assert torch.allclose(padded, ref)
    model.mirror_pad = 8
    assert torch.allclose(model.predict(x), ref)
    tiled = mirror_pad_predict(model, x, 8, tile=12)
    assert tiled.shape == direct.shape
