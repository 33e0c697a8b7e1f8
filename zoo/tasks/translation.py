"""Image translation between two domains and generator inversion, on data with a known
pairing (``zoo.data.two_domains``: ``DomainBatch`` of a, b and their renderings in the
other style).

``predict(batch)`` returns a dict of (B, C, H, W) images in [-1, 1], each key one of
``IMAGE_KEYS`` (a model returns those it makes): ``a_to_b``/``b_to_a`` translations,
``a_cycle``/``b_cycle`` round trips, ``a_recon`` = G(E(a)), ``a_recon_optimised`` and
``a_to_b_optimised`` from a code found by gradient descent on z, ``generated_a`` and
``generated_recon_a`` (the generator's own samples and their reconstructions),
``samples_a``/``samples_b`` (samples from fixed noise, paired by noise for CoGAN).

Evaluator: ``zoo.metrics.translation.TranslationEvaluator`` (translation_error beside its
do-nothing baseline, cycle_error, reconstruction_ratio, frechet_distance per domain);
``evaluator.frechet=false`` leaves the Fréchet distances out. Pictures: labelled columns
(A, A->B, A->B->A, the true B, ...) for a few validation items and a grid of samples.
``predict.py run=DIR source=IMAGE_OR_FOLDER [direction=a2b|b2a|reconstruct]
[route=encoder|optimise] output=DIR`` translates or inverts the given images.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from zoo import viz
from zoo.errors import UserError
from zoo.tasks.base import Option, Task, evaluator_spec, model_device, output_dir, shape_of

IMAGE_KEYS = ("a_to_b", "b_to_a", "a_cycle", "b_cycle", "a_recon", "a_recon_optimised",
              "a_to_b_optimised", "generated_a", "generated_recon_a", "samples_a", "samples_b")
# the pictures: (title, [(column label, batch field or prediction key), ...]); a batch field
# (the inputs, the true renderings) is shown when a prediction it goes with is there
PANELS = (
    ("a_side", [("A", "a"), ("A->B", "a_to_b"), ("A->B->A", "a_cycle"), ("true B", "a_in_b"),
                ("G(E(A))", "a_recon"), ("A->B (opt z)", "a_to_b_optimised"),
                ("G(z*) (opt z)", "a_recon_optimised")]),
    ("b_side", [("B", "b"), ("B->A", "b_to_a"), ("B->A->B", "b_cycle"), ("true A", "b_in_a")]),
    ("generated", [("G(z)", "generated_a"), ("G(E(G(z)))", "generated_recon_a")]),
)
GOES_WITH = {"a_in_b": ("a_to_b", "a_to_b_optimised"), "b_in_a": ("b_to_a",)}

def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], 3 channels, on the CPU."""
    x = x.detach().float().cpu()
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return ((x + 1) / 2).clamp(0, 1)


def labelled_columns(columns: Sequence[tuple[str, torch.Tensor]], scale: int = 2,
                     pad: int = 2) -> torch.Tensor:
    """(3, H, W) in [0, 1]: a header of labels over one column per (label, (N, C, h, w)
    images in [-1, 1]), rows aligned."""
    cols = []
    for label, images in columns:
        x = to_unit(images)
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
        w = x.shape[-1]
        tiles = [torch.ones(3, pad, w) * 0.2]
        for im in x:
            tiles += [im, torch.ones(3, pad, w) * 0.2]
        body = torch.cat(tiles, dim=1)
        head = viz.text_block([(label, viz.WHITE)], w, size=10, pad=1)
        cols.append(torch.cat([head, body], dim=1))
        cols.append(torch.ones(3, cols[-1].shape[1], pad) * 0.2)
    return viz.hstack(cols[:-1])


def read_images(source: str, size: int, channels: int) -> tuple[list[Path], torch.Tensor]:
    """Image files of ``source`` (a file or a folder) -> (paths, (N, channels, size, size)
    in [-1, 1]), resized (bilinear, antialiased) as the run's data draws its images."""
    from zoo.data.detection import decode_image_file
    from zoo.data.images import image_files

    files = image_files(source)
    out = []
    for f in files:
        x = decode_image_file(f).float().div(255)[None]
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        x = x.mean(0, keepdim=True) if channels == 1 else x
        out.append(x * 2 - 1)
    return files, torch.stack(out)


FEATURE_SETTINGS = ("num_train", "image_size", "min_px", "max_px", "seed")


def domain_features(meta: Mapping[str, Any]) -> Any:
    """(images in [-1, 1], "A"/"B") -> features of the classifier trained on that domain's
    real training images (``zoo.metrics.generative``: trained once per data setting and
    cached)."""
    from zoo.metrics import generative as G

    settings = {k: meta[k] for k in FEATURE_SETTINGS if k in meta}

    def real(domain: str) -> Any:
        def images_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
            from zoo.data.two_domains import TwoDomainsData

            return TwoDomainsData(**settings).domain_images("train", domain)
        return images_and_labels

    names = {}
    for domain in ("A", "B"):
        names[domain] = f"two_domains_{domain}"
        G.register_domain(names[domain], real(domain), int(meta.get("num_classes", 10)),
                          {"data": f"two_domains train, style {domain}", "epochs": 3, **settings})
    return lambda images, domain: G.image_features(images, names[domain])


class TranslationTask(Task):
    name = "translation"
    title = "image translation and generator inversion"
    predict_options: ClassVar[dict[str, Option]] = {
        "source": Option("str", required=True, metavar="IMAGE_OR_FOLDER",
                         help="images to translate or invert"),
        "direction": Option("str", None, "a2b, b2a or reconstruct (default: the model's first)",
                            choices=("a2b", "b2a", "reconstruct"), nullable=True),
        "route": Option("str", "encoder", "how inverting models find z: encoder or optimise",
                        choices=("encoder", "optimise")),
    }
    predict_writes = "<image>.png (the result), translation.png (inputs beside results)"
    evaluator_keys: ClassVar[dict[str, str]] = {"frechet": "Fréchet distances per domain (default true)"}

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.translation import TranslationEvaluator

        s = evaluator_spec(spec, self.evaluator_keys, self.name)
        frechet = s.get("frechet", True)
        if not isinstance(frechet, bool):
            raise UserError(f"evaluator.frechet must be true or false, got {frechet!r}")
        return TranslationEvaluator(features=domain_features(meta) if frechet else None)

    def check_output(self, predictions: Any, batch: Any) -> None:
        from zoo.data.two_domains import DomainBatch

        a = DomainBatch.of(batch).a
        if not isinstance(predictions, Mapping) or not predictions:
            raise self.fail(f"expected a non-empty dict of images keyed by some of "
                            f"{', '.join(IMAGE_KEYS)}, got {shape_of(predictions)}")
        unknown = sorted(set(predictions) - set(IMAGE_KEYS))
        if unknown:
            raise self.fail(f"unknown key '{unknown[0]}'; valid keys: {', '.join(IMAGE_KEYS)}")
        for k, v in predictions.items():
            if not (isinstance(v, torch.Tensor) and v.is_floating_point() and v.shape == a.shape):
                raise self.fail(f"{k} must be a float tensor of shape {tuple(a.shape)} like the "
                                f"batch's images, got {shape_of(v)}")

    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any],
               max_images: int = 6) -> dict[str, torch.Tensor]:
        from zoo.data.two_domains import DomainBatch

        x = DomainBatch.of(batch)
        n = min(max_images, len(x.a))
        out = {}
        for title, cols in PANELS:
            if not any(k in predictions for _, k in cols):
                continue
            got = [(label, predictions[k] if k in predictions else getattr(x, k)) for label, k in cols
                   if k in predictions or (k in DomainBatch._fields
                                           and any(p in predictions for p in GOES_WITH.get(k, IMAGE_KEYS)))]
            out[title] = labelled_columns([(label, v[:n]) for label, v in got])
        samples = [predictions[k] for k in ("samples_a", "samples_b") if k in predictions]
        if samples:
            m = min(8, len(samples[0]))
            out["samples"] = viz.grid([to_unit(im) for s in samples for im in s[:m]], nrow=m)
        return out

    @torch.no_grad()
    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        opt = self.parse_predict(options)
        model, meta = run.model, run.data.meta
        direction = opt["direction"] or model.directions[0]
        model._check_direction(direction)  # before any image is read
        files, images = read_images(opt["source"], int(meta["image_size"]), int(meta.get("channels", 3)))
        images = images.to(model_device(model))
        start = time.perf_counter()
        results = model.transform(images, direction, route=opt["route"])
        seconds = time.perf_counter() - start
        print(f"{len(files)} image{'s' if len(files) != 1 else ''}, {direction} ({opt['route']} route where it applies): "
              f"{1000 * seconds / len(files):.1f} ms per image")
        for f, x, y in zip(files, images, results):
            print(f"{f.name}: mean absolute change {float((y - x).abs().mean()):.3f}")
        if output is None:
            print("(add output=DIR to write the images)")
            return []
        folder = output_dir(output)
        written = [viz.save_png(to_unit(y), folder / f"{f.stem}.png") for f, y in zip(files, results)]
        written.append(viz.save_png(labelled_columns([("input", images), (direction, results)], scale=4),
                                    folder / "translation.png"))
        return written
