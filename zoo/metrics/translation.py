"""Scores of models that translate images between two domains or invert a generator,
against the known pairing of the two-domain data (``zoo.data.two_domains``).

Every number is a mean over images of a per-image value, kept per image until
``compute`` (so it does not depend on batch size or process count). Errors are mean
absolute pixel differences in [-1, 1] units (0: identical, 2: opposite).

- ``translation_error``: |G_AB(a) - a_in_b| (a's content in style B is the truth);
  ``translation_error_baseline``: the do-nothing translation |a - a_in_b|;
  ``translation_error_ba`` and its ``_baseline`` the same for B -> A.
- ``cycle_error``: the mean of |G_BA(G_AB(a)) - a| and |G_AB(G_BA(b)) - b|.
- ``reconstruction_ratio``: mean ||x_i - G(E(x_i))||_2 over mean ||x_i - G(E(x_j))||_2,
  j = (i + n/2) mod n a fixed unrelated image: 1 means the code carries nothing of the
  image, 0 a perfect inverse. Suffixed ``_optimised`` for codes found by gradient
  descent on z, ``_generated`` for the generator's own samples as inputs.
- ``frechet_distance_a`` / ``_b``: the Fréchet distance between the features of the
  real images of a domain and of the model's images of that domain (its samples, or
  translations into it), from the classifier of ``zoo.metrics.generative``;
  ``frechet_distance`` their mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from zoo.metrics.base import Evaluator

# prediction key -> (metric, the batch field it is compared with)
ERRORS = {"a_to_b": ("translation_error", "a_in_b"), "b_to_a": ("translation_error_ba", "b_in_a"),
          "a_to_b_optimised": ("translation_error_optimised", "a_in_b")}
# the do-nothing translation: the input itself against the truth
BASELINES = {"translation_error": ("a", "a_in_b"), "translation_error_ba": ("b", "b_in_a")}
CYCLES = {"a_cycle": "a", "b_cycle": "b"}
# metric -> (prediction key of G(E(x)), where x comes from: a batch field or a prediction key)
RECONSTRUCTIONS = {"reconstruction_ratio": ("a_recon", "a"),
                   "reconstruction_ratio_optimised": ("a_recon_optimised", "a"),
                   "reconstruction_ratio_generated": ("generated_recon_a", "generated_a")}
# domain -> prediction keys whose images belong to it, in order of preference
DOMAIN_IMAGES = {"a": ("samples_a", "b_to_a"), "b": ("samples_b", "a_to_b")}


def per_image_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B,) mean absolute difference."""
    return (x.float() - y.float()).abs().flatten(1).mean(1).cpu()


class TranslationEvaluator(Evaluator):
    """The metrics of the module docstring that apply to the keys a model predicts.

    ``features``: a function (images in [-1, 1], domain "A"/"B") -> (N, F) features for
    the Fréchet distance, or None to leave it out."""

    state_keys = ("errors", "recon", "feats")

    def __init__(self, features: Callable[[torch.Tensor, str], torch.Tensor] | None = None) -> None:
        self.features = features
        super().__init__()

    def reset(self) -> None:
        self.errors: dict[str, list[torch.Tensor]] = {}
        self.recon: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.feats: dict[str, list[torch.Tensor]] = {}

    def _add(self, key: str, values: torch.Tensor) -> None:
        self.errors.setdefault(key, []).append(values)

    @torch.no_grad()
    def update(self, predictions: dict[str, torch.Tensor], batch: Any) -> None:
        from zoo.data.two_domains import DomainBatch

        x = DomainBatch.of(batch)
        for key, (metric, truth) in ERRORS.items():
            if key in predictions:
                self._add(metric, per_image_l1(predictions[key], getattr(x, truth)))
                if metric in BASELINES:
                    src, dst = BASELINES[metric]
                    self._add(metric + "_baseline", per_image_l1(getattr(x, src), getattr(x, dst)))
        cycles = [per_image_l1(predictions[k], getattr(x, f)) for k, f in CYCLES.items() if k in predictions]
        if cycles:
            self._add("cycle_error", torch.stack(cycles).mean(0))
        for metric, (key, source) in RECONSTRUCTIONS.items():
            if key in predictions:
                real = predictions[source] if source in predictions else getattr(x, source)
                self.recon.setdefault(metric, []).append(
                    (real.float().flatten(1).cpu(), predictions[key].float().flatten(1).cpu()))
        if self.features is not None:
            for domain, keys in DOMAIN_IMAGES.items():
                key = next((k for k in keys if k in predictions), None)
                if key is None:
                    continue
                real = x.a if domain == "a" else x.b
                self.feats.setdefault(f"real_{domain}", []).append(
                    self.features(real, domain.upper()).float().cpu())
                self.feats.setdefault(f"fake_{domain}", []).append(
                    self.features(predictions[key], domain.upper()).float().cpu())

    def merge(self, states: list[dict[str, Any]]) -> None:
        for k in self.state_keys:  # each a dict of per-batch lists: concatenated in rank order
            merged: dict[str, list] = {}
            for s in states:
                for name, parts in s[k].items():
                    merged.setdefault(name, []).extend(parts)
            setattr(self, k, merged)

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for metric, parts in self.errors.items():
            out[metric] = float(torch.cat(parts).double().mean())
        for metric, parts in self.recon.items():
            real = torch.cat([r for r, _ in parts]).double()
            rec = torch.cat([g for _, g in parts]).double()
            out[metric] = reconstruction_ratio(real, rec)
        fds = []
        for domain in ("a", "b"):
            if f"fake_{domain}" in self.feats:
                from zoo.metrics.generative import frechet_distance

                fd = float(frechet_distance(torch.cat(self.feats[f"real_{domain}"]),
                                            torch.cat(self.feats[f"fake_{domain}"])))
                out[f"frechet_distance_{domain}"] = fd
                fds.append(fd)
        if fds:
            out["frechet_distance"] = sum(fds) / len(fds)
        order = ["translation_error", "translation_error_baseline", "cycle_error",
                 "reconstruction_ratio", "frechet_distance"]
        return {k: out[k] for k in sorted(out, key=lambda k: (order.index(k) if k in order else len(order), k))}


def reconstruction_ratio(real: torch.Tensor, recon: torch.Tensor) -> float:
    """(N, D) images and their reconstructions -> mean ||x_i - r_i|| / mean ||x_i - r_j||,
    j = (i + N // 2) mod N (a fixed pairing with an unrelated reconstruction)."""
    n = len(real)
    if n < 2:
        return float("nan")
    matched = (real - recon).norm(dim=1).mean()
    other = torch.roll(recon, shifts=n // 2, dims=0)
    mismatched = (real - other).norm(dim=1).mean()
    return float(matched / mismatched.clamp_min(1e-12))
