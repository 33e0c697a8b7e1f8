"""The generative metrics against references and hand-made sets."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from zoo.metrics import generative as G


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root))


@pytest.mark.parametrize("d", [1, 3, 16])
def test_frechet_distance_matches_scipy(d):
    g = torch.Generator().manual_seed(d)
    a = torch.randn(200, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g,
                                                                            dtype=torch.float64)
    b = 0.5 * torch.randn(150, d, generator=g, dtype=torch.float64) + 0.3
    assert G.frechet_distance(a, b) == pytest.approx(_scipy_fd(a.numpy(), b.numpy()), rel=1e-6, abs=1e-8)
    assert G.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_gaussians_is_closed_form():
    # N(m1, s1^2 I) vs N(m2, s2^2 I) in D dims: |m1-m2|^2 + D (s1 - s2)^2
    g = torch.Generator().manual_seed(0)
    a = 1.0 + 2.0 * torch.randn(200000, 2, generator=g, dtype=torch.float64)
    b = 0.5 * torch.randn(200000, 2, generator=g, dtype=torch.float64)
    assert G.frechet_distance(a, b) == pytest.approx(2 * 1.0 + 2 * 1.5 ** 2, rel=2e-2)


def test_mode_metrics_on_hand_made_sets():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    sigma = 0.1
    # 40 samples: 10 on each of modes 0 and 1 (within 3 sigma), 10 at 0.5 from mode 2 (too far),
    # 10 far from everything
    on0 = torch.tensor([[0.1, 0.1]]).repeat(10, 1)
    on1 = torch.tensor([[10.0, 0.25]]).repeat(10, 1)
    off2 = torch.tensor([[0.0, 10.5]]).repeat(10, 1)
    far = torch.tensor([[5.0, 5.0]]).repeat(10, 1)
    m = G.mode_metrics(torch.cat([on0, on1, off2, far]), centers, sigma)
    assert m == {"modes_covered": 2.0, "high_quality_fraction": 0.5}
    # every mode, every sample good
    m = G.mode_metrics(centers.repeat(5, 1), centers, sigma)
    assert m == {"modes_covered": 4.0, "high_quality_fraction": 1.0}
    # a mode with a single stray good sample among 400 is not covered (fair share 100)
    many = torch.cat([torch.zeros(399, 2), centers[3:4]])
    assert G.mode_metrics(many, centers, sigma)["modes_covered"] == 1.0
    # non-finite samples are bad samples, not errors
    nan = torch.full((10, 2), float("nan"))
    assert G.mode_metrics(torch.cat([on0, nan]), centers, sigma)["high_quality_fraction"] == 0.5


def test_registered_domain_classifier_is_reproducible_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    # two classes: bright left half vs bright right half
    labels = torch.randint(0, 2, (256,), generator=g)
    images = -torch.ones(256, 1, 8, 8)
    images[labels == 0, :, :, :4] = 1
    images[labels == 1, :, :, 4:] = 1
    images += 0.1 * torch.randn(images.shape, generator=g)
    G.register_domain("halves_test", lambda: (images, labels), 2, {"n": 256})
    try:
        logits = G.classify(images, "halves_test")
        assert (logits.argmax(1) == labels).float().mean() > 0.95
        feats = G.image_features(images, "halves_test")
        assert feats.shape == (256, G.FEATURE_DIM)
        files = list((tmp_path / "generative_metric").glob("halves_test-*.pt"))
        assert len(files) == 1
        # a fresh process reads the cache: same features; retraining gives the same weights
        G._LOADED.clear()
        assert torch.equal(G.image_features(images, "halves_test"), feats)
        net, _ = G.train_classifier(G._DOMAINS["halves_test"])
        assert torch.equal(net.features(images.clamp(-1, 1)), feats)
    finally:
        G._DOMAINS.pop("halves_test")
        G._LOADED.pop("halves_test", None)


def test_unknown_domain_is_a_user_error():
    from zoo.errors import UserError

    with pytest.raises(UserError, match="unknown image domain"):
        G.image_features(torch.zeros(1, 1, 8, 8), "nope")
