"""Do the data loaders keep up? Samples/s of each default dataset per worker count,
against the training step rate of a model that trains on it.

Every data config in configs/data/ that needs no files on disk is built, and its
training loader (the trainer's own, ``zoo.engine.loader.train_loader``: shuffled,
collated, with per-sample seeding when there are workers) is iterated for a few
batches with ``num_workers`` 0, 1, 2 and 4. Beside it, the first model config
(alphabetically) whose default data it is trains a few steps on the same batches in
the same process (forward, backward, AdamW step; CPU, one thread) and gives the
samples/s a training step consumes. A loader slower than that starves the model.
Data that is no model's default trains the first of ``FALLBACK_MODELS`` that fits it.
Manual-step models (bandits, game tables) and closed-form fits have no step rate.

    python benchmarks/dataloader.py                 # all of them (a few minutes)
    python benchmarks/dataloader.py --data shapes,digits --workers 0,2 --batches 10

Writes benchmarks/results/dataloader.md (or --output).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

FALLBACK_MODELS = ("transformer", "lstm_classifier", "lstm_tagger", "gpt", "mlp")


def _compose(overrides: list[str]) -> Any:
    from omegaconf import OmegaConf

    from zoo.engine.config import compose

    cfg = compose(ROOT / "configs", "train", overrides)
    del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg


def models_by_data() -> dict[str, str]:
    """data config -> the first model config (by name) that defaults to it."""
    out: dict[str, str] = {}
    for f in sorted((ROOT / "configs" / "model").glob("*.yaml")):
        for line in f.read_text().splitlines():
            s = line.strip()
            if s.startswith("- /data:"):
                out.setdefault(s.split(":", 1)[1].strip(), f.stem)
                break
    return out


def loader_rate(cfg: Any, workers: int, batches: int) -> float:
    """Samples/s of the trainer's training loader with ``workers`` processes, counting
    from the first batch (worker start-up, with persistent workers, is paid once a run).
    The data is built afresh each time: a cache filled by one measurement (rendered
    scenes) would be inherited by the next one's workers."""
    from zoo.engine import loader as L
    from zoo.engine.trainer import build_data

    with contextlib.redirect_stdout(io.StringIO()):
        data = build_data(cfg)
    seed = int(cfg.seed)
    data.num_workers = workers
    ds = data.dataset("train")
    loader, sampler, _ = L.train_loader(data, ds, seed=seed, device=torch.device("cpu"))
    from zoo.engine.utils import batch_size_of

    it = iter(loader)
    next(it)  # start-up (fork, first batch) is not the steady rate
    n, done, epoch, t0 = 0, 0, 0, time.perf_counter()
    while done < batches:
        for batch in it:
            n += batch_size_of(batch)
            done += 1
            if done >= batches:
                break
        else:  # a small training set: the next epoch (persistent workers carry on)
            epoch += 1
            sampler.set_epoch(epoch)
            it = iter(loader)
    dt = time.perf_counter() - t0
    L.shutdown(loader)
    return n / dt if dt > 0 and n else float("nan")


def step_rate(model_name: str, data_name: str, steps: int) -> float | None:
    """Samples/s of plain training steps of the model on its default data (one thread)."""
    from zoo.engine.optim import build_optimizers
    from zoo.engine.trainer import build_data, build_model
    from zoo.engine.utils import batch_size_of, seed_everything

    cfg = _compose([f"model={model_name}", f"data={data_name}", "logger=none"])
    seed_everything(0)
    with contextlib.redirect_stdout(io.StringIO()):
        data, model = build_data(cfg), build_model(cfg)
        if model.step_strategy != "grouped" or not model.optimizer_groups():
            return None
        model.on_train_start(data, str(ROOT / "outputs" / "_dataloader_bench"))
    groups = model.optimizer_groups()
    opts = build_optimizers(groups, cfg.optim)
    ds = data.dataset("train")
    batch = data.collate_fn([ds[i] for i in range(min(data.batch_size, len(ds)))]) \
        if data.collate_fn else torch.utils.data.default_collate([ds[i] for i in range(data.batch_size)])
    model.train()

    def one() -> None:
        for g, opt in opts.items():
            opt.zero_grad(set_to_none=True)
            losses = model.training_step(batch, g)
            sum(v for k, v in losses.items() if not k.startswith("log_")).backward()
            opt.step()

    one()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    dt = time.perf_counter() - t0
    return steps * batch_size_of(batch) / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="comma-separated data configs (default: all)")
    ap.add_argument("--workers", default="0,1,2,4", help="worker counts (default 0,1,2,4)")
    ap.add_argument("--batches", type=int, default=20, help="batches timed per measurement")
    ap.add_argument("--steps", type=int, default=3, help="training steps timed per model")
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "dataloader.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from zoo.engine.trainer import build_data
    from zoo.errors import DataError, UserError

    workers = [int(w) for w in args.workers.split(",")]
    names = args.data.split(",") if args.data else sorted(p.stem for p in (ROOT / "configs" / "data").glob("*.yaml"))
    models = models_by_data()
    rows, skipped = [], []
    for name in names:
        model = models.get(name)
        cfg, error = None, ""
        # data that is no model's default trains with the first of these it fits
        for candidate in [model] if model else FALLBACK_MODELS:
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    cfg = _compose([f"model={candidate}", f"data={name}", "logger=none"])
                    data = build_data(cfg)
                    data.dataset("train")
                model = candidate
                break
            except (DataError, UserError, ImportError, OSError) as e:
                cfg = None
                if not error or isinstance(e, DataError):  # a missing file says most
                    error = str(e).splitlines()[0][:90]
        if cfg is None:
            skipped.append(f"{name} ({error})")
            continue
        rates = []
        for w in workers:
            try:
                rates.append(loader_rate(cfg, w, args.batches))
            except Exception as e:  # noqa: BLE001 - one failure is a row, not the end
                rates.append(float("nan"))
                print(f"  {name} workers={w}: {type(e).__name__}: {e}", file=sys.stderr)
        try:
            step = step_rate(model, name, args.steps) if model else None
        except Exception as e:  # noqa: BLE001
            print(f"  {name} model {model}: {type(e).__name__}: {e}", file=sys.stderr)
            step = None
        shown_model = model if models.get(name) == model else f"{model} (not its default)"
        rows.append((name, shown_model, data.batch_size, rates, step))
        shown = ", ".join(f"{w}w {r:,.0f}/s" for w, r in zip(workers, rates))
        print(f"{name}: {shown}; model {model or '-'}: "
              f"{'-' if step is None else f'{step:,.0f}'} samples/s", flush=True)

    head = "| data | batch | " + " | ".join(f"{w} workers" for w in workers) + \
        " | model (its default data) | model samples/s | loader (0 workers) / model |"
    lines = [head, "|" + "---|" * (len(workers) + 5)]
    for name, model, bs, rates, step in rows:
        ratio = f"{rates[0] / step:.1f}x" if step and rates and rates[0] == rates[0] else "-"
        lines.append(f"| {name} | {bs} | " + " | ".join(f"{r:,.0f}" for r in rates) +
                     f" | {model} | {'-' if step is None else f'{step:,.0f}'} | {ratio} |")
    text = ("# Data loading\n\n`python benchmarks/dataloader.py`: samples/s of each default "
            "dataset's training loader (the trainer's, per-sample seeded with workers) per "
            "worker count, after the first batch, against the samples/s that training steps "
            "of a model on that data consume (CPU, one thread, AdamW).\n\n"
            f"Measured on a shared, loaded machine (2 cores shared by several jobs; torch "
            f"{torch.__version__}): workers compete with each other and with the model for "
            "the same cores, so more workers cannot help here; on a GPU machine with free "
            "cores they add up. A ratio above 1 means the loader outruns the model on the "
            f"same CPU; a GPU step is 10-100x faster. {args.batches} batches per "
            "measurement.\n\n" + "\n".join(lines) + "\n")
    if skipped:
        text += "\nNot measured (need files on disk): " + "; ".join(skipped) + "\n"
    print("\n" + text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
