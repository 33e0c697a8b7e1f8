"""Generative models: what they draw, scored against the real split.

Predictions (``GenerativeModel.predict``): a dict with ``samples`` (one per real item,
(B, 2) points or (B, C, H, W) images in [0, 1]), optional ``labels`` / ``attributes``
(what conditional samples were asked for), ``fixed`` (a fixed noise's samples, the same
across training), ``interpolation`` (rows of 8 along latent lines) and ``reconstruction``.

Evaluator (``zoo.metrics.generative.GenerativeEvaluator``): 2-D data (``kind: points``
in the data's metadata) -> ``modes_covered``, ``high_quality_fraction``; images ->
``frechet_distance`` on the domain classifier's features, ``sharpness_ratio``, and for
conditional models ``label_accuracy``. ``evaluator.domain=NAME`` picks the classifier.

``predict.py run=DIR num=N [label=K] [text="red circle left of blue square"] [seed=S]
output=DIR`` writes ``samples.png`` and ``samples.pt`` (and ``samples.csv`` for points).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from zoo import viz
from zoo.errors import UserError
from zoo.tasks.base import Option, Task, evaluator_spec, model_device, output_dir, shape_of

INTERP_STEPS = 8


def data_kind(meta: Mapping[str, Any]) -> str:
    return str(meta.get("kind") or ("images" if meta.get("channels") else "points"))


def scatter_picture(samples: torch.Tensor, meta: Mapping[str, Any], fixed: torch.Tensor | None = None,
                    title: str = "") -> torch.Tensor:
    """Samples over the true mixture density (shaded), its centres and 3-sigma circles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centers = torch.as_tensor(meta.get("centers") or [[0.0, 0.0]], dtype=torch.float32)
    sigma = float(meta.get("sigma") or 0.1)
    lim = float(centers.abs().max()) + 1.0
    xs = torch.linspace(-lim, lim, 200)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    grid = torch.stack([gx, gy], -1).reshape(-1, 2)
    density = torch.exp(-torch.cdist(grid, centers).pow(2) / (2 * sigma ** 2)).sum(1).reshape(200, 200)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=80)
    ax.imshow(density.sqrt().numpy(), extent=(-lim, lim, -lim, lim), origin="lower", cmap="Greys")
    s = samples.detach().float().cpu()
    ax.scatter(s[:, 0], s[:, 1], s=3, c="tab:orange", alpha=0.6, label=f"generated ({len(s)})")
    if fixed is not None:
        f = fixed.detach().float().cpu()
        ax.scatter(f[:, 0], f[:, 1], s=14, c="tab:blue", marker="^", label="fixed noise")
    ax.scatter(centers[:, 0], centers[:, 1], s=30, c="black", marker="x", label="true modes")
    for c in centers.tolist():
        ax.add_patch(plt.Circle(c, 3 * sigma, fill=False, color="tab:green", lw=0.7))
    ax.plot([], [], color="tab:green", lw=0.7, label="3 sigma")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_title(title or "samples over the true density", fontsize=9)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    image = viz.figure_image(fig)
    plt.close(fig)
    return image


def image_grid(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    x = images.detach().float().cpu().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return viz.grid(list(x), nrow=nrow)


class GenerativeTask(Task):
    name = "generative"
    title = "generative models"
    evaluator_keys: ClassVar[dict[str, str]] = {"domain": "the image classifier of the Fréchet distance (digits, shapes, ...)"}
    predict_options: ClassVar[dict[str, Option]] = {
        "num": Option("int", 64, "how many samples", low=1, high=100000),
        "label": Option("int", None, "the class a conditional model draws", low=0, nullable=True,
                        metavar="K"),
        "text": Option("text", None, "the description a text-conditioned model draws",
                       nullable=True, metavar="TEXT"),
        "seed": Option("int", 0, "the noise", low=0),
    }
    predict_writes = "samples.png, samples.pt (and samples.csv for 2-D points)"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.generative import GenerativeEvaluator

        spec = evaluator_spec(spec, self.evaluator_keys, self.name)
        kind = data_kind(meta)
        if kind == "points":
            if meta.get("centers") is None or meta.get("sigma") is None:
                raise UserError("generative 2-D data must give its mixture centers and sigma in its "
                                "metadata (data=ring8 or data=grid25)")
            return GenerativeEvaluator(kind="points", centers=meta["centers"], sigma=float(meta["sigma"]))
        domain = spec.get("domain") or meta.get("domain")
        if not domain:
            raise UserError("generative image data names no domain for its classifier; set "
                            "data.domain=NAME or +evaluator.domain=NAME (digits, shapes, scene_text)")
        return GenerativeEvaluator(kind="images", domain=str(domain))

    def check_output(self, predictions: Any, batch: Any) -> None:
        if not isinstance(predictions, Mapping) or not isinstance(predictions.get("samples"), torch.Tensor):
            raise self.fail(f"expected a dict with 'samples', got {shape_of(predictions)}")
        s, real = predictions["samples"], batch[0]
        if not s.is_floating_point() or tuple(s.shape) != tuple(real.shape):
            raise self.fail(f"expected samples shaped like the real batch {tuple(real.shape)}, "
                            f"got {shape_of(s)}")
        for key in ("labels", "attributes"):
            v = predictions.get(key)
            if v is not None and (not isinstance(v, torch.Tensor) or len(v) != len(s) or v.is_floating_point()):
                raise self.fail(f"'{key}' must be ({len(s)}, ...) integer classes, got {shape_of(v)}")

    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        s = predictions["samples"]
        if s.ndim == 2:
            from zoo.metrics.generative import mode_metrics

            title = ""
            if meta.get("centers") is not None:
                m = mode_metrics(s, torch.as_tensor(meta["centers"]), float(meta["sigma"]))
                title = (f"{int(m['modes_covered'])}/{len(meta['centers'])} modes, "
                         f"{m['high_quality_fraction']:.0%} within 3 sigma")
            return {"generative/scatter": scatter_picture(s, meta, predictions.get("fixed"), title)}
        out = {"generative/samples": image_grid(s[:64])}
        if predictions.get("fixed") is not None:
            out["generative/fixed_noise"] = image_grid(predictions["fixed"])
        if predictions.get("interpolation") is not None:
            out["generative/interpolation"] = image_grid(predictions["interpolation"], INTERP_STEPS)
        if predictions.get("reconstruction") is not None:
            n = min(16, len(s))
            pairs = torch.stack([batch[0][:n].float().cpu(), predictions["reconstruction"][:n].float().cpu()], 1)
            out["generative/reconstruction"] = image_grid(pairs.flatten(0, 1), 8)
        return out

    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        opt = self.parse_predict(options)
        model = run.model
        model.eval()
        device = model_device(model)
        torch.manual_seed(opt["seed"])
        cond = model.request(opt["num"], label=opt["label"], text=opt["text"])
        chunks, done = [], 0
        while done < opt["num"]:
            n = min(1024, opt["num"] - done)
            part = None
            if cond is not None:
                part = tuple(c[done:done + n].to(device) for c in cond) if isinstance(cond, tuple) \
                    else cond[done:done + n].to(device)
            chunks.append(model.sample(n, part).cpu())
            done += n
        samples = torch.cat(chunks)
        if output is None:
            print(f"drew {len(samples)} samples of shape {tuple(samples.shape[1:])}")
            return []
        out = output_dir(output)
        torch.save(samples, out / "samples.pt")
        written = [out / "samples.pt"]
        if samples.ndim == 2:
            lines = ["x,y", *(f"{x:.6f},{y:.6f}" for x, y in samples.tolist())]
            (out / "samples.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            written.append(out / "samples.csv")
            written.append(viz.save_png(scatter_picture(samples, run.data.meta), out / "samples.png"))
        else:
            written.append(viz.save_png(image_grid(samples[:256], 16), out / "samples.png"))
        return written
