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
  trainer.device=auto|cpu|cuda|mps  seed=N  resume=RUN_DIR  init_from=CKPT
  hydra.run.dir=DIR     where the run directory goes
  --cfg job|all         print the composed config (--resolve: resolved) without training
  any.config.key=value  (see configs/; +key=value adds a key)

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
    """Turn a person's mistakes into one line and exit status 2."""
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
        from zoo.engine.trainer import TrainingStopped

        if isinstance(e, TrainingStopped):
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1
        raise


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

    sweep_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("hydra.sweep.dir=")),
                     time.strftime("multirun/%Y-%m-%d/%H-%M-%S"))
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
    failures = 0
    for i, combo in enumerate(combos):
        print(f"[{i + 1}/{len(combos)}] {' '.join(combo)}", flush=True)
        code = _guard(lambda: _train([*combo, f"hydra.run.dir={sweep_dir}/{i}"], cdir))
        failures += code != 0
    print(f"sweep done: {len(combos) - failures}/{len(combos)} runs succeeded in {sweep_dir}")
    return 0 if failures == 0 else 1


def _train(argv: list[str], cdir: Path) -> int:
    from omegaconf import OmegaConf

    from zoo.engine import distributed as D
    from zoo.engine.config import compose, validate
    from zoo.engine.run import load_run_config
    from zoo.engine.trainer import Trainer, save_config
    from zoo.engine.utils import select_device

    for a in argv:
        if a.startswith("-"):
            raise UserError(f"unknown option '{a}'; arguments are key=value overrides (see --help)")
    overrides = [a for a in argv if not a.startswith("resume=")]
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("resume=")), None)
    if resume in ("", "null", "None"):
        resume = None

    if resume:
        run_dir = Path(resume)
        if not run_dir.is_dir():
            raise UserError(f"resume: run directory does not exist: {run_dir}")
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            raise UserError(f"resume: {run_dir} has no checkpoints/last.pt to continue from")
        cfg = load_run_config(run_dir)
        for ov in overrides:
            key, value = ov.split("=", 1) if "=" in ov else (ov, None)
            if value is None or key.lstrip("+") in ("model", "data", "optim", "sched", "logger",
                                                   "experiment", "trainer"):
                raise UserError(f"resume: '{ov}' cannot change a run's model or data; only "
                                "key.path=value overrides (e.g. trainer.max_steps=2000)")
            if key.startswith("hydra."):
                continue
            try:
                if not key.startswith("+") and OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                    raise UserError(f"bad override '{ov}': key '{key}' is not in the run's config")
                OmegaConf.update(cfg, key.lstrip("+"), OmegaConf.create({"v": _yaml(value)}).v, merge=True)
            except UserError:
                raise
            except Exception as e:
                raise UserError(f"bad override '{ov}': {str(e).splitlines()[0]}") from None
        cfg.resume = str(run_dir)
        validate(cfg)
    else:
        cfg = compose(cdir, "train", overrides)
        choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
        run_dir = Path(cfg.hydra.run.dir)
        del cfg["hydra"]
        cfg.run_info = {"choices": choices, "overrides": overrides,
                        "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    _resolve(cfg)

    device = select_device(cfg.trainer.device)
    D.init(device)
    run_dir = Path(D.broadcast_object(str(run_dir)))
    if not resume and (run_dir / "checkpoints" / "last.pt").exists():
        raise UserError(f"{run_dir} already holds a run; continue it with resume={run_dir} "
                        "or choose another hydra.run.dir")
    if D.is_main():
        save_config(cfg, run_dir)
        print(f"run dir: {run_dir}  (model={_choice(cfg, 'model')}, data={_choice(cfg, 'data')}, "
              f"device={device}, processes={D.world_size()})", flush=True)
    D.barrier()
    try:
        Trainer(cfg, run_dir, device, resume=bool(resume)).fit()
    finally:
        D.cleanup()
    return 0


def _choice(cfg: Any, group: str) -> str:
    try:
        return str(cfg.run_info.choices[group])
    except Exception:
        return str(cfg[group].get("_target_", "?")).rsplit(".", 1)[-1]


def _yaml(value: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _resolve(cfg: Any) -> None:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise UserError(f"config error: {str(e).splitlines()[0]}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(f"config values must be set: {', '.join(missing)} (e.g. {missing[0]}=...)")


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
