"""zoo.layers.roi: the separable RoIAlign equals torchvision's, outputs and gradients."""

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign as TVMultiScaleRoIAlign
from torchvision.ops import roi_align as tv_roi_align

from zoo.layers.roi import MultiScaleRoIAlign, roi_align


def _rois(k: int, n: int, h: int, w: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Corners from past the top-left border to past the bottom-right one (image units),
    # sides from sub-cell slivers (the legacy minimum of one cell) to most of the map.
    xy = torch.rand(k, 2, generator=g, dtype=torch.float64) * torch.tensor([w + 4.0, h + 4.0]) / scale \
        - 2.0 / scale
    wh = torch.rand(k, 2, generator=g, dtype=torch.float64) * torch.tensor([w, h]) / scale
    wh[: k // 5] *= 0.02
    b = torch.randint(0, n, (k, 1), generator=g).to(torch.float64)
    return torch.cat([b, xy, xy + wh], dim=1)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
def test_roi_align_equals_torchvision_forward_and_backward(aligned: bool, sampling_ratio: int) -> None:
    torch.manual_seed(0)
    feats = torch.randn(3, 5, 11, 13, dtype=torch.float64, requires_grad=True)
    rois = _rois(60, 3, 11, 13, 0.25, seed=sampling_ratio)
    want = tv_roi_align(feats, rois, (7, 6), 0.25, sampling_ratio, aligned)
    got = roi_align(feats, rois, (7, 6), 0.25, sampling_ratio, aligned)
    assert got.shape == want.shape == (60, 5, 7, 6)
    assert want.abs().sum() > 0 and (want == 0).any()        # some RoIs reach past the border
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    grad_out = torch.randn_like(want)
    (g_want,) = torch.autograd.grad(want, feats, grad_out)
    (g_got,) = torch.autograd.grad(got, feats, grad_out)
    torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-12)


def test_roi_align_empty_and_adaptive_sampling() -> None:
    feats = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = roi_align(feats, torch.zeros(0, 5), 7, 0.5, 2)
    assert out.shape == (0, 4, 7, 7)
    out.sum().backward()                                     # the graph survives no RoIs
    rois = _rois(10, 2, 8, 8, 0.5, seed=0).float()
    # sampling_ratio <= 0 (a per-RoI sample count) is torchvision's own code path
    torch.testing.assert_close(roi_align(feats, rois, 7, 0.5, 0), tv_roi_align(feats, rois, 7, 0.5, 0))


def test_multiscale_roi_align_equals_torchvision() -> None:
    torch.manual_seed(1)
    feats = {"0": torch.randn(2, 8, 64, 64), "1": torch.randn(2, 8, 32, 32), "2": torch.randn(2, 8, 16, 16),
             "pool": torch.randn(2, 8, 8, 8)}
    for f in feats.values():
        f.requires_grad_(True)
    # box sides from 10 to 250 px on a 256 px image: every level gets some
    boxes = [torch.tensor([[0.0, 0, 100, 120], [3, 4, 20, 30], [10, 10, 250, 250], [5, 5, 120, 200]]),
             torch.tensor([[1.0, 2, 60, 60], [40, 50, 255, 255], [7, 9, 17, 19]])]
    ours = MultiScaleRoIAlign(["0", "1", "2"], 7, 2)
    theirs = TVMultiScaleRoIAlign(["0", "1", "2"], 7, 2)
    shapes = [(256, 256), (256, 256)]
    ours(feats, boxes, shapes)                  # the first call sets the levels' scales
    calls = []
    import zoo.layers.roi as roi

    def spy(*args, **kwargs):
        calls.append(args[1].shape[0])
        return roi_align(*args, **kwargs)

    roi.roi_align, saved = spy, roi.roi_align
    try:
        got = ours(feats, boxes, shapes)
    finally:
        roi.roi_align = saved
    assert sorted(calls) == [1, 2, 4] and len(set(ours.map_levels(boxes).tolist())) == 3
    want = theirs(feats, boxes, shapes)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn_like(want)
    g_got = torch.autograd.grad(got, list(feats.values())[:3], grad_out)
    g_want = torch.autograd.grad(want, list(feats.values())[:3], grad_out)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # no RoIs at all: an empty crop batch, not an error
    assert ours(feats, [torch.zeros(0, 4), torch.zeros(0, 4)], shapes).shape == (0, 8, 7, 7)
