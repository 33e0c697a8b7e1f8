"""Scores for generative models: numbers, not eyeballing.

2-D mixtures (Srivastava et al. 2017, VEEGAN's protocol): a sample is *high quality*
when it lies within 3 sigma of its nearest mode; a mode is *covered* when it holds at
least ``min_share`` of its fair share (N / K) of high-quality samples.

Images: a small CNN classifier trained once on the real data of a *domain* (digits,
shapes, scene_text or one registered with ``register_domain``) is part of the metric.
It is trained reproducibly (fixed seed) on first use and cached under ``$ZOO_CACHE``
(default ``~/.cache/zoo``), keyed by the domain and a hash of its data settings.
Its penultimate activations give the Fréchet distance between real and generated sets
(FID's formula, Heusel et al. 2017, on a small in-domain network instead of Inception)
and its predictions give the share of conditional samples classified as what was asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import UserError, choices
from zoo.metrics.base import Evaluator

FEATURE_DIM = 64
_VERSION = 1  # bump when the classifier or its training changes: old caches are ignored


# -- Fréchet distance -------------------------------------------------------------------------
def _stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = feats.detach().to(torch.float64).cpu()
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"frechet_distance needs (N >= 2, D) features, got {tuple(x.shape)}")
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (len(x) - 1)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two (N, D) / (M, D) feature
    sets, in float64. tr (S_a S_b)^(1/2) = sum sqrt(eig(A S_b A)) with A = S_a^(1/2), a
    symmetric PSD product, so no complex square root is needed."""
    mu_a, s_a = _stats(feats_a)
    mu_b, s_b = _stats(feats_b)
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    middle = root_a @ s_b @ root_a
    ev = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0)
    fd = (mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * ev.sqrt().sum()
    return float(fd.clamp_min(0))


# -- 2-D mixtures -----------------------------------------------------------------------------
def mode_metrics(samples: torch.Tensor, centers: torch.Tensor, sigma: float,
                 min_share: float = 0.2) -> dict[str, float]:
    """``modes_covered`` (count) and ``high_quality_fraction`` of (N, 2) samples against
    (K, 2) mode centres of std ``sigma`` (see the module docstring)."""
    x = torch.as_tensor(samples, dtype=torch.float64).reshape(-1, 2)
    c = torch.as_tensor(centers, dtype=torch.float64).reshape(-1, 2)
    if len(x) == 0:
        return {"modes_covered": 0.0, "high_quality_fraction": 0.0}
    finite = torch.isfinite(x).all(1)
    d = torch.cdist(torch.where(finite[:, None], x, torch.zeros_like(x)), c)
    dist, nearest = d.min(1)
    good = finite & (dist <= 3 * sigma)
    counts = torch.bincount(nearest[good], minlength=len(c))
    need = max(1.0, min_share * len(x) / len(c))
    return {"modes_covered": float((counts >= need).sum()),
            "high_quality_fraction": float(good.double().mean())}


# -- the domain classifier --------------------------------------------------------------------
@dataclass
class Domain:
    name: str
    real_dataset_fn: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    num_classes: tuple[int, ...]     # one entry per predicted attribute
    settings: dict[str, Any]


_DOMAINS: dict[str, Domain] = {}
_LOADED: dict[str, nn.Module] = {}


def register_domain(name: str, real_dataset_fn: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                    num_classes: int | Sequence[int], settings: dict[str, Any] | None = None) -> None:
    """Declare a domain: ``real_dataset_fn()`` returns (images (N, C, H, W) in [-1, 1],
    labels (N,) int64, or (N, A) for A attributes with ``num_classes`` a list of A counts).
    ``settings`` (JSON-able) describe the data: a change retrains the classifier."""
    heads = (int(num_classes),) if isinstance(num_classes, int) else tuple(int(k) for k in num_classes)
    _DOMAINS[name] = Domain(name, real_dataset_fn, heads, dict(settings or {}))
    _LOADED.pop(name, None)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from zoo.data.digits import DigitsData

    ds = DigitsData(image_size=32).dataset("train")
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    return images * 2 - 1, ds.labels


def _shapes() -> tuple[torch.Tensor, torch.Tensor]:
    from zoo.data.generative import ShapeImages

    images, labels, _ = ShapeImages(image_size=32).render("train")
    return images * 2 - 1, labels


def _scene_text() -> tuple[torch.Tensor, torch.Tensor]:
    from zoo.data.generative import SceneText

    images, _, attrs = SceneText(image_size=32).render("train")
    return images * 2 - 1, attrs


register_domain("digits", _digits, 10, {"data": "sklearn digits train split", "image_size": 32,
                                     "epochs": 12})
register_domain("shapes", _shapes, 4, {"data": "ShapeImages train", "image_size": 32, "n": 4000,
                                    "epochs": 2})
register_domain("scene_text", _scene_text, [3, 3, 3, 3],
                {"data": "SceneText train", "image_size": 32, "n": 6000, "epochs": 3})


class DomainClassifier(nn.Module):
    """(B, C, H, W) in [-1, 1] -> FEATURE_DIM features -> one logit vector per attribute."""

    def __init__(self, channels: int, heads: Sequence[int]) -> None:
        super().__init__()
        self.heads = tuple(heads)
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(64 * 16, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, sum(self.heads))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE") or Path.home() / ".cache" / "zoo") / "generative_metric"


def _key(d: Domain) -> str:
    blob = json.dumps({"v": _VERSION, "heads": d.num_classes, "settings": d.settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _split_loss(logits: torch.Tensor, labels: torch.Tensor, heads: Sequence[int]) -> torch.Tensor:
    labels = labels.reshape(len(labels), -1)
    parts = torch.split(logits, list(heads), dim=1)
    return sum(F.cross_entropy(p, labels[:, i]) for i, p in enumerate(parts)) / len(heads)


def train_classifier(d: Domain, epochs: int | None = None, seed: int = 0) -> tuple[nn.Module, dict[str, float]]:
    """The domain's classifier, trained from a fixed seed on 90% of its real data; the
    other 10% gives its held-out accuracy (every attribute right)."""
    images, labels = d.real_dataset_fn()
    epochs = int(d.settings.get("epochs", 5)) if epochs is None else epochs
    images, labels = images.float().clamp(-1, 1), labels.long()
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(images), generator=g)
        n_hold = max(1, len(images) // 10)
        hold, train = perm[:n_hold], perm[n_hold:]
        net = DomainClassifier(images.shape[1], d.num_classes)
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        for _ in range(epochs):
            order = train[torch.randperm(len(train), generator=g)]
            for i in range(0, len(order), 64):
                idx = order[i:i + 64]
                loss = _split_loss(net(images[idx]), labels[idx], d.num_classes)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    net.eval()
    with torch.no_grad():
        pred = predict_attributes_with(net, images[hold], d.num_classes)
    acc = float((pred == labels[hold].reshape(len(hold), -1)).all(1).double().mean())
    return net, {"heldout_accuracy": acc, "train_images": len(train)}


def predict_attributes_with(net: nn.Module, images: torch.Tensor, heads: Sequence[int]) -> torch.Tensor:
    logits = net(images)
    return torch.stack([p.argmax(1) for p in torch.split(logits, list(heads), dim=1)], 1)


def _domain(name: str) -> Domain:
    if name not in _DOMAINS:
        raise UserError(f"unknown image domain '{name}' for the generative metrics; known: "
                        f"{choices(sorted(_DOMAINS))}")
    return _DOMAINS[name]


def classifier(domain: str) -> nn.Module:
    """The cached classifier of ``domain`` (trained and saved on first use)."""
    if domain in _LOADED:
        return _LOADED[domain]
    d = _domain(domain)
    path = cache_dir() / f"{domain}-{_key(d)}.pt"
    net = None
    if path.is_file():
        try:
            blob = torch.load(path, weights_only=True)
            net = DomainClassifier(int(blob["channels"]), d.num_classes)
            net.load_state_dict(blob["model"])
            net.info = dict(blob["info"])  # type: ignore[assignment]
        except (OSError, RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError):
            # an unreadable cache is retrained, not fatal
            net = None
    if net is None:
        net, info = train_classifier(d)
        net.info = info  # type: ignore[assignment]
        channels = net.body[0].in_channels
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"model": net.state_dict(), "channels": channels, "info": info}, tmp)
        os.replace(tmp, path)
    net.eval().requires_grad_(False)
    _LOADED[domain] = net
    return net


def _prepared(images: torch.Tensor, net: nn.Module) -> torch.Tensor:
    x = images.detach().float().cpu()
    want = net.body[0].in_channels
    if x.shape[1] != want:
        if x.shape[1] == 1:
            x = x.expand(-1, want, -1, -1)
        else:
            raise UserError(f"images have {x.shape[1]} channels; the domain classifier takes {want}")
    return x.clamp(-1, 1)


@torch.no_grad()
def image_features(images: torch.Tensor, domain: str) -> torch.Tensor:
    """(B, C, H, W) images in [-1, 1] -> (B, FEATURE_DIM) features of ``domain``'s classifier."""
    net = classifier(domain)
    return net.features(_prepared(images, net))


@torch.no_grad()
def classify(images: torch.Tensor, domain: str) -> torch.Tensor:
    """(B, C, H, W) images in [-1, 1] -> (B, sum of classes) logits (the heads side by side)."""
    net = classifier(domain)
    return net(_prepared(images, net))


@torch.no_grad()
def predict_attributes(images: torch.Tensor, domain: str) -> torch.Tensor:
    """(B, A) predicted class of each attribute (A = 1 for a plain class label)."""
    return predict_attributes_with(classifier(domain), _prepared(images, classifier(domain)),
                                   _domain(domain).num_classes)


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """(B,) mean absolute Laplacian per image: how much fine detail it holds."""
    x = images.detach().float().cpu()
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    k = k.expand(x.shape[1], 1, 3, 3).contiguous()
    return F.conv2d(x, k, groups=x.shape[1]).abs().mean(dim=(1, 2, 3))


# -- the evaluator ----------------------------------------------------------------------------
class GenerativeEvaluator(Evaluator):
    """Samples of a generative model against the real split.

    ``kind="points"``: ``modes_covered`` and ``high_quality_fraction`` of all samples.
    ``kind="images"`` (inputs and samples in [0, 1]): ``frechet_distance`` between the
    domain classifier's features of the real and the generated sets, ``sharpness_ratio``
    (mean |Laplacian| of samples over that of the real images: < 1 is blurrier), and for
    conditional samples ``label_accuracy`` (share classified as every asked attribute).
    ``reconstruction_mse`` when the model also reconstructs its inputs.
    """

    state_keys = ("samples", "real", "correct", "asked", "sharp_fake", "sharp_real", "recon")

    def __init__(self, *, kind: str, domain: str | None = None, centers: Any = None,
                 sigma: float | None = None) -> None:
        if kind not in ("points", "images"):
            raise UserError(f"generative evaluator kind must be points or images, got {kind}")
        self.kind, self.domain = kind, domain
        self.centers = None if centers is None else torch.as_tensor(centers, dtype=torch.float64)
        self.sigma = sigma
        super().__init__()

    def reset(self) -> None:
        self.samples: list[torch.Tensor] = []  # points, or image features
        self.real: list[torch.Tensor] = []
        self.correct = torch.zeros((), dtype=torch.int64)
        self.asked = torch.zeros((), dtype=torch.int64)
        self.sharp_fake: list[torch.Tensor] = []
        self.sharp_real: list[torch.Tensor] = []
        self.recon: list[torch.Tensor] = []

    def update(self, predictions: Any, batch: Any) -> None:
        samples = predictions["samples"].detach().float().cpu()
        real = batch[0].detach().float().cpu()
        if self.kind == "points":
            self.samples.append(samples.reshape(-1, 2))
            return
        assert self.domain is not None
        self.samples.append(image_features(samples * 2 - 1, self.domain))
        self.real.append(image_features(real * 2 - 1, self.domain))
        self.sharp_fake.append(sharpness(samples))
        self.sharp_real.append(sharpness(real))
        asked = predictions.get("attributes", predictions.get("labels"))
        if asked is not None:
            got = predict_attributes(samples * 2 - 1, self.domain)
            asked = asked.detach().cpu().long().reshape(len(samples), -1)
            self.correct = self.correct + (got == asked).all(1).sum()
            self.asked = self.asked + len(samples)
        if predictions.get("reconstruction") is not None:
            rec = predictions["reconstruction"].detach().float().cpu()
            self.recon.append((rec - real).pow(2).flatten(1).mean(1))

    def compute(self) -> dict[str, Any]:
        if self.kind == "points":
            x = torch.cat(self.samples) if self.samples else torch.zeros(0, 2)
            out = mode_metrics(x, self.centers, float(self.sigma))
            out["num_samples"] = float(len(x))
            return out
        out: dict[str, Any] = {}
        fake = torch.cat(self.samples) if self.samples else torch.zeros(0, FEATURE_DIM)
        real = torch.cat(self.real) if self.real else torch.zeros(0, FEATURE_DIM)
        if len(fake) >= 2 and len(real) >= 2:
            out["frechet_distance"] = frechet_distance(real, fake)
        if self.sharp_real:
            out["sharpness_ratio"] = float(torch.cat(self.sharp_fake).double().mean()
                                           / torch.cat(self.sharp_real).double().mean().clamp_min(1e-12))
        if int(self.asked):
            out["label_accuracy"] = float(self.correct) / float(self.asked)
        if self.recon:
            out["reconstruction_mse"] = float(torch.cat(self.recon).double().mean())
        out["num_samples"] = float(len(fake))
        return out
