"""What the trainer costs over a minimal hand-written loop.

The same model, data, batch and optimizer run through a hand loop (``training_step``,
``zero_grad``, ``backward``, ``step``) and through ``zoo.engine.trainer.Trainer``,
interleaved A/B in one process. Each is timed at two run lengths, so set-up, the final
validation and the last checkpoint (fixed costs) cancel: per-step time =
(T(long) - T(short)) / (long - short). The table shows the median over rounds of the
hand loop's per-step time divided by the trainer's (1.00x: no overhead).

    python benchmarks/trainer_overhead.py            # the real measurement (minutes)
    python benchmarks/trainer_overhead.py --quick    # a smoke run (seconds)

Writes benchmarks/results/trainer_overhead.md (or --output).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
from torch.utils.data import DataLoader

# name -> (overrides, short run, long run) in optimizer steps
CASES = {
    "tiny MLP": (["model=mlp", "data=digits", "model.dropout=0.0"], 300, 1500),
    "ResNet-18": (["model=resnet18", "data=digits"], 20, 80),
}
QUICK = {"tiny MLP": (30, 120), "ResNet-18": (3, 8)}
COMMON = ["logger=none", "trainer.progress=false", "trainer.device=cpu", "sched=constant",
          "trainer.ckpt_every=1000000000", "trainer.val_every=1000000",
          "trainer.val_every_steps=1000000000", "trainer.limit_val_batches=1", "trainer.amp=off"]


def _cfg(overrides: list[str], steps: int) -> Any:
    from omegaconf import OmegaConf

    from zoo.engine.config import compose

    cfg = compose(ROOT / "zoo" / "configs", "train",
                  [*overrides, *COMMON, f"trainer.max_steps={steps}"])
    del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg


def hand_loop(cfg: Any, steps: int) -> float:
    """Seconds for ``steps`` plain optimizer steps, built from the same config."""
    from zoo.engine import distributed as D
    from zoo.engine.optim import build_optimizers
    from zoo.engine.trainer import build_data, build_model
    from zoo.engine.utils import seed_everything

    t0 = time.perf_counter()
    seed_everything(int(cfg.seed))
    data, model = build_data(cfg), build_model(cfg)
    opt = build_optimizers(model.optimizer_groups(), cfg.optim)["main"]
    ds = data.dataset("train")
    sampler = D.EpochSampler(len(ds), shuffle=True, seed=int(cfg.seed))
    loader = DataLoader(ds, batch_size=data.batch_size, sampler=sampler, collate_fn=data.collate_fn,
                        drop_last=len(ds) > data.batch_size)
    model.train()
    done, epoch = 0, 0
    while done < steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            losses = model.training_step(batch, "main")
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    return time.perf_counter() - t0


def trainer_run(cfg: Any, steps: int) -> float:
    from zoo.engine.trainer import Trainer

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        Trainer(cfg, Path(d), torch.device("cpu")).fit()
        return time.perf_counter() - t0


def measure(name: str, overrides: list[str], short: int, long: int, rounds: int) -> dict[str, float]:
    import contextlib
    import io

    cfgs = {n: _cfg(overrides, n) for n in (short, long)}
    with contextlib.redirect_stdout(io.StringIO()):  # warm-up: imports, dataset caches
        hand_loop(cfgs[short], short)
        trainer_run(cfgs[short], short)
    hand_ms, trainer_ms, ratios = [], [], []
    for r in range(rounds):
        times: dict[tuple[str, int], float] = {}
        order = [("hand", short), ("trainer", short), ("hand", long), ("trainer", long)]
        if r % 2:
            order = [(("trainer" if w == "hand" else "hand"), n) for w, n in order]
        for who, n in order:
            with contextlib.redirect_stdout(io.StringIO()):
                times[(who, n)] = (hand_loop if who == "hand" else trainer_run)(cfgs[n], n)
        h = (times[("hand", long)] - times[("hand", short)]) / (long - short)
        t = (times[("trainer", long)] - times[("trainer", short)]) / (long - short)
        hand_ms.append(1e3 * h)
        trainer_ms.append(1e3 * t)
        ratios.append(h / t)
        print(f"  {name} round {r + 1}/{rounds}: hand {1e3 * h:.3f} ms/step, trainer {1e3 * t:.3f} "
              f"ms/step, {h / t:.3f}x", flush=True)
    return {"hand_ms": statistics.median(hand_ms), "trainer_ms": statistics.median(trainer_ms),
            "ratio": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "rounds": rounds, "short": short, "long": long}


def table(results: dict[str, dict[str, float]], note: str) -> str:
    lines = [("| model | hand loop ms/step | trainer ms/step | trainer speed vs hand loop (median) "
              "| range over rounds | rounds | run lengths |"),
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['hand_ms']:.3f} | {r['trainer_ms']:.3f} | {r['ratio']:.3f}x "
                     f"| {r['min']:.2f}-{r['max']:.2f} | {r['rounds']} | {r['short']}/{r['long']} |")
    return "\n".join(lines) + "\n\n" + note + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs, 2 rounds: a smoke test")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7, quick 2)")
    ap.add_argument("--models", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "trainer_overhead.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (2 if args.quick else 7)
    results = {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in CASES:
            print(f"error: unknown model '{name}'; valid: {', '.join(CASES)}", file=sys.stderr)
            return 2
        overrides, short, long = CASES[name]
        if args.quick:
            short, long = QUICK[name]
        results[name] = measure(name, overrides, short, long, rounds)
    quick = " (quick run: not a measurement)" if args.quick else ""
    note = (f"CPU, {args.threads} thread(s), torch {torch.__version__}; digits, batch 64, AdamW, "
            f"trainer with its defaults (log_every 10), constant schedule{quick}.")
    text = ("# Trainer overhead\n\n`python benchmarks/trainer_overhead.py`: the same model, data, "
            "batch and optimizer through a minimal hand loop and through the trainer, interleaved "
            "A/B, per-step time from two run lengths (fixed costs cancel).\n\n" + table(results, note))
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
