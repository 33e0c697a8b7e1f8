"""The command-line entries behind train.py, evaluate.py and predict.py.

Each ``*_main(argv)`` returns an exit status: 0 on success, 2 for a person's mistake
(one line on stderr, no traceback), 1 for a run that had to stop (non-finite loss).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

from zoo.errors import UserError

USAGE_TRAIN = """\
usage: python train.py [key=value ...]

  model=NAME            which model (its default data comes with it)
  data=NAME             another dataset for it
  optim=NAME sched=NAME trainer=NAME logger=NAME experiment=NAME
  trainer.max_steps=N trainer.max_epochs=N trainer.val_every=N trainer.ckpt_every=N
  trainer.device=auto|cpu|cuda|mps  seed=N  init_from=CKPT
  hydra.run.dir=DIR     where the run directory goes (default: a new
                        outputs/DATE/TIME_MODEL, with -2, -3, ... if that exists)
  --cfg job|all         print the composed config (--resolve: resolved) without training
  any.config.key=value  (see configs/; +key=value adds a key)
  -m a=1,2 b=x,y        a sweep: one run per combination under multirun/DATE/TIME/N

resume=RUN_DIR [key=value ...]
  continues a run from RUN_DIR/checkpoints/last.pt (exactly, on CPU). The run's own
  command line may be repeated: equal group choices and values are accepted. Only these
  may change, from the next step on: trainer.max_steps max_epochs val_every ckpt_every
  log_every patience progress device max_time limit_val_batches interrupt_at
  on_nonfinite compile, data.eval_batch_size num_workers root, logger.*; any other
  change is refused (start a new run with init_from=RUN_DIR/checkpoints/last.pt).
  Changes are recorded in config.yaml under run_info.resumes. A run that already
  finished is not trained again (exit 0) unless its length changes.

A run directory holds: config.yaml (resolved), checkpoints/last.pt and best.pt,
metrics.json, train.log (everything printed, appended on resume), tb/ (TensorBoard),
images/, and .lock (held while a training runs in it: a second one exits with 2).

exit status: 0 done (or nothing left to do)   1 stopped: non-finite loss, or a crash
  (its traceback, then where last.pt is)       2 a mistake (one line: error: ...)
  130 / 143 stopped by SIGINT / SIGTERM after saving last.pt (the line to continue)

torchrun --nproc_per_node=N train.py ...   trains with DDP (gloo on CPU, NCCL on CUDA)
"""


def _config_dir(config_dir: Path | None) -> Path:
    from zoo.engine.config import default_config_dir

    return Path(config_dir) if config_dir else default_config_dir()


def _listing(config_dir: Path) -> str:
    from zoo.engine.config import GROUPS, list_group

    lines = []
    for g in GROUPS:
        names = list_group(config_dir, g)
        if names:
            lines.append(f"{g + ':':<12}{', '.join(names)}")
    return "\n".join(lines)


def _guard(fn: Callable[[], int]) -> int:
    """Turn a person's mistakes into one line and exit status 2, a stopped or crashed run
    into its report and status 1, Ctrl-C into status 130."""
    from zoo.engine import distributed as D

    try:
        return fn()
    except UserError as e:
        if D.env_rank() == 0:
            print(f"error: {e}", file=sys.stderr, flush=True)
        elif D.env_world_size() > 1:
            # Every rank meets the same mistake; rank 0 reports it. Give it time to: torchrun
            # stops all workers as soon as one fails, so this wait ends when rank 0 exits.
            time.sleep(10)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from zoo.engine.run import failure_report

        report = failure_report(e)
        if report is None:
            raise
        print(report[0], file=sys.stderr, flush=True)
        return report[1]


# --------------------------------------------------------------------------- train
def train_main(argv: list[str] | None = None, config_dir: Path | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cdir = _config_dir(config_dir)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE_TRAIN + "\navailable configs:\n" + _listing(cdir))
        return 0
    if any(a in ("--cfg", "-c") for a in argv):  # Hydra's convention: print the config, no training
        from zoo.engine.config import print_config

        return _guard(lambda: print_config(cdir, argv))
    if any(a in ("-m", "--multirun") for a in argv):
        return _guard(lambda: _multirun([a for a in argv if a not in ("-m", "--multirun")], cdir))
    code = _guard(lambda: _train(argv, cdir))
    from zoo.engine import distributed as D

    if D.env_world_size() > 1:  # a torchrun worker: leave without interpreter shutdown
        D.exit_worker(code)
    return code


def _multirun(argv: list[str], cdir: Path) -> int:
    """A sweep: the cartesian product of comma-separated values (Hydra's sweep syntax,
    e.g. ``-m model=lenet,mlp optim.lr=1e-3,1e-2``), one run directory each under
    ``multirun/<date>/<time>/<n>`` (or ``hydra.sweep.dir=DIR``), run one after another."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from zoo.engine.run import claim_run_dir

    given = next((a.split("=", 1)[1] for a in argv if a.startswith("hydra.sweep.dir=")), None)
    argv = [a for a in argv if not a.startswith(("hydra.sweep.dir=", "hydra.run.dir="))]
    try:
        parsed = OverridesParser.create().parse_overrides(argv)
    except HydraException as e:
        raise UserError(f"bad sweep: {str(e).splitlines()[0]}") from None
    axes = []
    for ov in parsed:
        key = ov.get_key_element()
        values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]
        axes.append([f"{key}={v}" for v in values])
    combos = list(itertools.product(*axes))
    # Two sweeps started in the same second get two directories.
    sweep_dir = Path(given) if given else claim_run_dir(Path(time.strftime("multirun/%Y-%m-%d/%H-%M-%S")))
    failures = 0
    for i, combo in enumerate(combos):
        print(f"[{i + 1}/{len(combos)}] {' '.join(combo)}", flush=True)
        code = _guard(lambda: _train([*combo, f"hydra.run.dir={sweep_dir}/{i}"], cdir))
        failures += code != 0
    print(f"sweep done: {len(combos) - failures}/{len(combos)} runs succeeded in {sweep_dir}")
    return 0 if failures == 0 else 1


def _train(argv: list[str], cdir: Path) -> int:
    """Route the command line to ``zoo.engine.run.train``; returns the exit status."""
    from zoo.engine import run as R

    for a in argv:
        if a.startswith("-"):
            raise UserError(f"unknown option '{a}'; arguments are key=value overrides (see --help)")
    overrides = [a for a in argv if not a.startswith("resume=")]
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("resume=")), None)
    if resume in ("", "null", "None"):
        resume = None
    if resume:
        summary = R.train(R.resume_config(resume, overrides), resume, resume=True)
    else:
        cfg, run_dir, explicit = R.new_config(cdir, overrides)
        summary = R.train(cfg, run_dir, unique_dir=not explicit)
    return R.exit_status(summary)


# --------------------------------------------------------------------------- key=value options
def _options(argv: list[str], allowed: set[str] | None, usage: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for a in argv:
        if "=" not in a or a.startswith("-"):
            raise UserError(f"bad argument '{a}': expected key=value\n{usage}".splitlines()[0])
        k, v = a.split("=", 1)
        if allowed is not None and k not in allowed:
            raise UserError(f"unknown option '{k}'; valid options: {', '.join(sorted(allowed))}")
        opts[k] = v
    return opts


# --------------------------------------------------------------------------- evaluate
USAGE_EVALUATE = """\
usage: python evaluate.py run=DIR [ckpt=PATH] [split=test] [output=PATH] [device=auto]
                          [batch_size=N] [save_predictions=PATH]
       python evaluate.py task=detection gt=instances.json predictions=results.json
                          [iou_type=bbox|segm|keypoints] [protocol=coco|voc07|voc12] [output=PATH]
       python evaluate.py task=segmentation gt=DIR_OF_PNG predictions=DIR_OF_PNG
                          num_classes=N [ignore_index=255] [output=PATH]
"""
RUN_EVAL_KEYS = {"run", "ckpt", "split", "output", "device", "save_predictions", "batch_size"}


def _key_value_entry(argv: list[str] | None, usage: str, fn: Callable[[list[str]], int]) -> int:
    """evaluate.py/predict.py: usage on --help (status 0) or no arguments (status 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help", "help") for a in argv):
        print(usage)
        return 0 if argv else 2
    return _guard(lambda: fn(argv))


def evaluate_main(argv: list[str] | None = None) -> int:
    return _key_value_entry(argv, USAGE_EVALUATE, _evaluate)


def _evaluate(argv: list[str]) -> int:
    opts = _options(argv, None, USAGE_EVALUATE)
    if "task" in opts:
        from zoo.metrics.files import evaluate_files

        evaluate_files(opts)
        return 0
    unknown = set(opts) - RUN_EVAL_KEYS
    if unknown:
        raise UserError(f"unknown option '{sorted(unknown)[0]}'; valid options: "
                        f"{', '.join(sorted(RUN_EVAL_KEYS | {'task'}))}")
    evaluate_run(opts)
    return 0


def evaluate_run(opts: dict[str, str]) -> dict[str, Any]:
    """Evaluate a run's checkpoint on a split; print a table; write metrics.json (+ plots)."""
    from zoo.engine.evaluation import eval_loader, evaluate
    from zoo.engine.run import load_run
    from zoo.engine.utils import amp_dtype, flat_numbers, format_table, write_json

    split = opts.get("split", "test")
    r = load_run(opts.get("run"), opts.get("ckpt"), opts.get("device", "auto"),
                 eval_batch_size=int(opts["batch_size"]) if opts.get("batch_size") else None)
    run_dir, cfg, data, model, device, ckpt_path, ckpt = (
        r.run_dir, r.cfg, r.data, r.model, r.device, r.ckpt_path, r.ckpt)
    if split not in data.splits:
        raise UserError(f"unknown split '{split}'; valid splits: {', '.join(data.splits)}")
    evaluator = model.build_evaluator(data.meta)
    keep: list | None = [] if opts.get("save_predictions") else None
    metrics = evaluate(model, eval_loader(data, split, device), evaluator, device,
                       amp_dtype(cfg.trainer.get("amp", "off"), device), progress=True,
                       desc=f"evaluate {split}", keep_predictions=keep)
    out = Path(opts["output"]) if opts.get("output") else run_dir / f"eval_{split}" / "metrics.json"
    result = {**flat_numbers(metrics), "split": split, "checkpoint": str(ckpt_path),
              "step": ckpt.get("step")}
    result.update({k: v for k, v in metrics.items() if k not in result})
    write_json(out, result)
    if hasattr(evaluator, "save_plots"):
        evaluator.save_plots(out.parent)
    if keep is not None:
        saver = getattr(model, "save_predictions", None)
        if saver is None:
            raise UserError(f"save_predictions is not supported for {type(model).__name__}")
        saver(Path(opts["save_predictions"]), keep, data.meta)
        print(f"predictions written to {opts['save_predictions']}")
    print(format_table(metrics, f"{split} metrics of {ckpt_path} (step {ckpt.get('step')}):"))
    print(f"written: {out}")
    return result


# --------------------------------------------------------------------------- predict
USAGE_PREDICT = """\
usage: python predict.py run=DIR [ckpt=PATH] [device=auto] [output=DIR] [model-specific key=value ...]
  detectors:        source=IMAGE_OR_FOLDER output=DIR
  language models:  prompt=TEXT max_new_tokens=N [temperature=T top_k=K top_p=P]
"""


def predict_main(argv: list[str] | None = None) -> int:
    return _key_value_entry(argv, USAGE_PREDICT, _predict)


def _predict(argv: list[str]) -> int:
    import torch

    from zoo.engine.run import load_run

    opts = _options(argv, None, USAGE_PREDICT)
    r = load_run(opts.pop("run", None), opts.pop("ckpt", None), opts.pop("device", "auto"))
    run_dir, data, model = r.run_dir, r.data, r.model
    model.eval()
    hook = getattr(model, "predict_cli", None)
    if hook is None:
        raise UserError(f"{type(model).__name__} has no predict.py mode; use evaluate.py run={run_dir}")
    output = opts.pop("output", None)
    with torch.no_grad():
        hook(opts, data, Path(output) if output else None)
    return 0
