"""Metric pictures as PNG files: confusion matrix, precision-recall curves, per-class bars.

Figures are drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``),
so nothing here changes the process-wide backend or needs a display, and figures are
freed when the function returns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    from zoo.viz import save_figure

    return save_figure(fig, path)


def plot_confusion_matrix(cm: Sequence[Sequence[int]] | np.ndarray, class_names: Sequence[str],
                          path: str | os.PathLike, normalize: bool = True,
                          title: str = "Confusion matrix") -> Path:
    """Rows are true classes, columns predictions; ``normalize`` divides each row by its
    total (recall on the diagonal). Counts are written in the cells up to 20 classes."""
    m = np.asarray(cm, dtype=np.float64)
    shown = m / np.maximum(m.sum(1, keepdims=True), 1) if normalize else m
    n = len(class_names)
    side = min(max(4.0, 0.45 * n + 2), 24.0)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=list(class_names), rotation=90 if n > 6 else 0)
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        hi = shown.max() if shown.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > 0.5 * hi else "black")
    return _save(fig, path)


def plot_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike,
                   title: str = "Precision-recall at IoU 0.50") -> Path:
    """One small panel per class: precision against recall, titled with the area under it.

    ``curves``: {class name: (recall (R,), precision (R,))}.
    """
    names = list(curves)
    n = max(len(names), 1)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.0 * cols, 2.7 * rows + 0.4))
    fig.suptitle(title)
    for k, name in enumerate(names):
        rec, prec = (np.asarray(v, dtype=np.float64) for v in curves[name])
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.plot(rec, prec, lw=1.5)
        ax.fill_between(rec, prec, alpha=0.15)
        area = float(np.sum(np.diff(rec) * (prec[1:] + prec[:-1]) / 2))  # trapezoid rule
        ax.set_title(f"{name} (area {area:.3f})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_per_class_bars(values: Mapping[str, float], title: str, path: str | os.PathLike) -> Path:
    """Horizontal bars, one per class, in the given order, with the mean as a dashed line."""
    names = list(values)
    vals = np.asarray([values[k] for k in names], dtype=np.float64)
    fig = Figure(figsize=(6.5, max(2.0, 0.28 * len(names) + 1.2)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, vals, color="tab:blue")
    ax.set_yticks(y, labels=names, fontsize=8)
    ax.invert_yaxis()
    if len(vals):
        ax.axvline(float(vals.mean()), color="tab:red", ls="--", lw=1, label=f"mean {vals.mean():.3f}")
        ax.legend(loc="lower right", fontsize=8)
        for yi, v in zip(y, vals):
            ax.text(v, yi, f" {v:.3f}", va="center", fontsize=7)
    ax.set_xlim(0, max(1.0, float(vals.max()) * 1.1 if len(vals) else 1.0))
    ax.set_title(title)
    return _save(fig, path)
