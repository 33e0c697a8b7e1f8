"""The command-line entries behind train.py, evaluate.py and predict.py.

Each ``*_main(argv)`` returns an exit status: 0 on success, 2 for a person's mistake
(one line on stderr, no traceback), 1 for a run that had to stop (non-finite loss).
"""

from __future__ import annotations

import functools
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
  trainer.max_steps=N trainer.max_epochs=N trainer.ckpt_every=N
  trainer.val_every=N (epochs) trainer.val_every_steps=N (steps)
  trainer.device=auto|cpu|cuda|mps  seed=N  init_from=CKPT
  hydra.run.dir=DIR     where the run directory goes (default: a new
                        outputs/DATE/TIME_MODEL, with -2, -3, ... if that exists)
  --cfg job|all         print the composed config (--resolve: resolved) without training
  any.config.key=value  (see configs/, i.e. zoo/configs/; +key=value adds a key)
  --config-dir DIR      your own model/, data/, experiment/ ... configs beside the shipped
                        ones (also $ZOO_CONFIG_DIR, several joined by ':'); listed below
  -m a=1,2 b=x,y        a sweep through Hydra's multirun: one run per combination under
                        multirun/DATE/TIME/N, one after another; hydra/launcher=joblib runs
                        them in parallel processes, hydra/launcher=submitit_slurm on SLURM
                        (submitit_local: the same, here); -m experiment=optuna_lr searches
                        with Optuna (hydra/sweeper=optuna), maximising trainer.monitor.
                        Launchers and Optuna: pip install 'zoo[cluster]'. See docs/sweeps.md

resume=RUN_DIR [key=value ...]
  continues a run from RUN_DIR/checkpoints/last.pt (exactly, on CPU). The run's own
  command line may be repeated: equal group choices and values are accepted. Only these
  may change, from the next step on: trainer.max_steps max_epochs val_every
  val_every_steps ckpt_every
  log_every patience progress device max_time limit_val_batches interrupt_at
  on_nonfinite compile, data.eval_batch_size num_workers persistent_workers
  prefetch_factor root, logger.*; any other
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


def _config_dir(config_dir: Any, argv: list[str] | None = None) -> Any:
    """The config sources: ``config_dir`` (a whole tree's folder, as tests pass) or the
    shipped configs plus $ZOO_CONFIG_DIR, then each ``--config-dir DIR`` of ``argv``
    (removed from it) appended to the search path."""
    from zoo.engine.config import as_configs

    configs = as_configs(config_dir)
    dirs = _pop_config_dirs(argv) if argv is not None else []
    return configs.with_dirs(dirs) if dirs else configs


def _pop_config_dirs(argv: list[str]) -> list[str]:
    """``--config-dir DIR`` / ``--config-dir=DIR`` (Hydra's spelling; ``-cd`` too), taken
    out of ``argv`` in place."""
    dirs, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("--config-dir", "-cd"):
            if i + 1 >= len(argv) or not argv[i + 1] or "=" in argv[i + 1]:
                raise UserError(f"{a} needs a folder: {a} DIR")
            dirs.append(argv[i + 1])
            del argv[i:i + 2]
        elif a.startswith("--config-dir="):
            dirs.append(a.split("=", 1)[1])
            del argv[i]
        else:
            i += 1
    return dirs


def _listing(config_dir: Any, groups: tuple[str, ...] | None = None) -> str:
    """One line per group of the shipped choices, and one more per added folder that has
    choices of that group (``--config-dir``, ``$ZOO_CONFIG_DIR``)."""
    from zoo.engine.config import GROUPS, as_configs, list_group_by_source

    configs = as_configs(config_dir)
    lines = []
    for g in groups or GROUPS:
        for source, names in list_group_by_source(configs, g):
            if source == configs.primary:
                lines.append(f"{g + ':':<12}{', '.join(names)}")
            else:
                lines.append(f"{g + ':':<12}{', '.join(names)}   (from {source[len('file://'):]})")
    return "\n".join(lines)


def _guard(fn: Callable[[], int]) -> int:
    """Turn a person's mistakes into one line and exit status 2, a stopped or crashed run
    into its report and status 1, Ctrl-C into status 130."""
    import os

    try:
        return fn()
    except UserError as e:
        # torchrun's variables, read here rather than through zoo.engine.distributed, which
        # imports torch: scoring a COCO file never needs it, not even to report a mistake.
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"error: {e}", file=sys.stderr, flush=True)
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
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
    code = _guard(lambda: _train_entry(argv, config_dir))
    from zoo.engine import distributed as D

    if D.env_world_size() > 1:  # a torchrun worker: leave without interpreter shutdown
        D.exit_worker(code)
    return code


def _train_entry(argv: list[str], config_dir: Path | None) -> int:
    cdir = _config_dir(config_dir, argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE_TRAIN + "\navailable configs:\n" + _listing(cdir))
        return 0
    if any(a in ("--cfg", "-c") for a in argv):  # Hydra's convention: print the config, no training
        from zoo.engine.config import print_config

        return print_config(cdir, argv)
    if any(a in ("-m", "--multirun") for a in argv):
        return _multirun([a for a in argv if a not in ("-m", "--multirun")], cdir)
    return _train(argv, cdir)


# --------------------------------------------------------------------------- sweeps
# Launchers and sweepers outside Hydra itself, and the plugin that provides each.
SWEEP_PLUGINS = {
    "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    "hydra/launcher=submitit_local": ("hydra_plugins.hydra_submitit_launcher",
                                      "hydra-submitit-launcher"),
    "hydra/launcher=submitit_slurm": ("hydra_plugins.hydra_submitit_launcher",
                                      "hydra-submitit-launcher"),
    "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
}
# Hydra's multirun defaults that would put files of its own into each run directory
# (.hydra/, <job>.log) or take over the root logger; the run directory is the zoo's.
SWEEP_FIXED = ("hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none")


class JobOutcome(float):
    """What one sweep job returns to Hydra: its objective, the best value of
    ``trainer.monitor`` (NaN when the run has none or failed, which Optuna records as a
    failed trial and a plain sweep ignores), with the job's exit status and run directory."""

    status: int
    run_dir: str

    def __new__(cls, value: float, status: int = 0, run_dir: str = "") -> JobOutcome:  # noqa: PYI034
        self = super().__new__(cls, value)
        self.status, self.run_dir = status, run_dir
        return self

    def __reduce__(self) -> tuple:  # launchers pickle it back from their processes
        return (JobOutcome, (float(self), self.status, self.run_dir))


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported; False also when its parent package is missing
    (``find_spec("a.b")`` raises then instead of returning None)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _missing_plugin(text: str) -> str | None:
    """The one-line message for a launcher/sweeper named in ``text`` whose plugin is not
    installed, or None."""
    for choice, (module, dist) in SWEEP_PLUGINS.items():
        group, name = choice.split("=")
        named = choice in text or f"{group}/{name}" in text
        if named and not _installed(module):
            return (f"{choice} needs the {dist} plugin: pip install 'zoo[cluster]' "
                    f"(or pip install {dist})")
    return None


def _check_sweep_choices(cdir: Any, argv: list[str], groups: tuple[str, ...]) -> None:
    """Every value of a swept group (``model=lenet,mlp``) names a config, checked before
    Hydra launches anything; ``glob(...)`` and the like are expanded by Hydra itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from zoo.engine.config import list_group
    from zoo.errors import choices

    try:
        parsed = OverridesParser.create().parse_overrides(argv)
    except HydraException as e:
        raise UserError(f"bad sweep: {str(e).strip().splitlines()[0]}") from None
    for ov in parsed:
        key = ov.get_key_element().lstrip("+~")
        if key not in groups:
            continue
        try:
            values = (list(ov.sweep_string_iterator()) if ov.is_sweep_override()
                      else [ov.get_value_element_as_str()])
        except Exception:  # glob(), interval(): not a list of names
            continue
        valid = list_group(cdir, key)
        for v in values:
            if v not in ("", "null") and v not in valid:
                raise UserError(f"unknown {key} '{v}'; valid choices: {choices(valid)}")


def _multirun(argv: list[str], cdir: Any, entry: str = "train",
              report: Callable[[Path, list[Path]], None] | None = None) -> int:
    """A sweep through Hydra's own multirun: its sweeper turns the command line into jobs
    (``model=lenet,mlp optim.lr=1e-3,1e-2``: the cartesian product; ``hydra/sweeper=optuna``:
    trials), its launcher runs them (one after another by default; ``hydra/launcher=joblib``
    in parallel processes, ``submitit_local``/``submitit_slurm`` as submitit jobs). Each job
    is one zoo run in ``SWEEP/<n>`` (``multirun/<date>/<time>``, made unique, or
    ``hydra.sweep.dir=DIR``) with its own config.yaml and metrics; ``report`` then sees
    the run directories. Exit status 0 when every job succeeded, else 1."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from zoo.engine.config import GROUPS, initialize_hydra
    from zoo.engine.run import claim_run_dir

    _check_options(argv)
    argv = [a for a in argv if not a.lstrip("+").startswith("hydra.run.dir=")]
    missing = _missing_plugin(" ".join(argv))
    if missing:
        raise UserError(missing)
    _check_sweep_choices(cdir, argv, GROUPS if entry == "train" else SOLVE_GROUPS)
    given = next((a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith("hydra.sweep.dir=")),
                 None)
    if given is None:  # two sweeps started in the same second get two directories
        sweep_dir = claim_run_dir(Path(time.strftime("multirun/%Y-%m-%d/%H-%M-%S")))
        argv.append(f"hydra.sweep.dir={sweep_dir}")
    else:
        sweep_dir = Path(given)
    keys = {a.split("=", 1)[0].lstrip("+") for a in argv}
    fixed = [f for f in SWEEP_FIXED if f.split("=", 1)[0] not in keys]
    job = functools.partial(_sweep_job, cdir, entry)
    GlobalHydra.instance().clear()
    try:
        hydra = initialize_hydra(cdir)
        returns = hydra.multirun(config_name=entry, task_function=job, overrides=[*argv, *fixed])
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        from zoo.engine.config import _one_line

        msg = _one_line(e)
        raise UserError(_missing_plugin(msg) or f"bad sweep: {msg}") from None
    finally:
        GlobalHydra.instance().clear()
    outcomes = [r.return_value for batch in (returns or []) for r in batch]
    if outcomes:
        runs = [Path(o.run_dir) for o in outcomes]
        failures = sum(o.status != 0 for o in outcomes)
    else:  # a sweeper that returns nothing (Optuna): the run directories it left
        runs = sorted((d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()),
                      key=lambda d: int(d.name)) if sweep_dir.is_dir() else []
        done = "metrics.json" if entry == "train" else "result.json"
        failures = sum(not (d / done).is_file() for d in runs)
    if report is not None:
        report(sweep_dir, runs)
    best = sweep_dir / "optimization_results.yaml"
    if best.is_file():
        print(f"best trial: {best}")
    print(f"sweep done: {len(runs) - failures}/{len(runs)} runs succeeded in {sweep_dir}")
    return 0 if failures == 0 else 1


def _sweep_job(cdir: Any, entry: str, _cfg: Any) -> JobOutcome:
    """Hydra's task function: one job of a sweep, run by the zoo's own entry (compose,
    checks, run directory, metrics) with the job's overrides, in ``SWEEP/<subdir>``. A
    mistake is one line and a status, never an exception that stops the other jobs."""
    import math

    from hydra.core.hydra_config import HydraConfig
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    hc = HydraConfig.get()
    overrides = [str(o) for o in hc.overrides.task if not o.lstrip("+").startswith("hydra.")]
    run_dir = f"{hc.sweep.dir}/{hc.sweep.subdir}"
    print(f"[job {hc.job.num}] {' '.join(overrides)}", flush=True)
    found: dict[str, Any] = {}

    def one() -> int:
        if entry == "solve":
            return _solve([*overrides, f"hydra.run.dir={run_dir}"], cdir)
        summary = _train_summary([*overrides, f"hydra.run.dir={run_dir}"], cdir)
        found.update(summary)
        from zoo.engine.run import exit_status

        return exit_status(summary)

    backup = get_gh_backup()  # composing the job's config clears Hydra's global state
    try:
        code = _guard(one)
    finally:
        restore_gh_from_backup(backup)
    value = found.get("best_value")
    value = float(value) if isinstance(value, (int, float)) and code == 0 else math.nan
    return JobOutcome(value, code, run_dir)


def _train(argv: list[str], cdir: Any) -> int:
    """Route the command line to ``zoo.engine.run.train``; returns the exit status."""
    from zoo.engine.run import exit_status

    return exit_status(_train_summary(argv, cdir))


def _train_summary(argv: list[str], cdir: Any) -> dict[str, Any]:
    """Train (or resume) as the command line says; returns the run's summary."""
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
    return summary


def _yaml(value: str) -> Any:
    """A command-line value as YAML reads it (``3`` an int, ``[a, b]`` a list), else the text."""
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


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
def _run_eval_options() -> dict[str, Any]:
    from zoo.tasks.base import Option

    return {
        "run": Option("str", metavar="DIR"), "ckpt": Option("str", metavar="PATH"),
        "split": Option("str", "test", metavar="SPLIT"), "output": Option("str", metavar="PATH"),
        "device": Option("str", "auto", metavar="auto|cpu|cuda|mps"),
        "save_predictions": Option("str", metavar="PATH"),
        "batch_size": Option("int", None, low=1, metavar="N"),
    }


RUN_EVAL_KEYS = {"run", "ckpt", "split", "output", "device", "save_predictions", "batch_size"}


def usage_evaluate() -> str:
    """evaluate.py's usage: the run mode, then one line per task that scores files."""
    from zoo.tasks import all_tasks

    lines = ["usage: python evaluate.py run=DIR [ckpt=PATH] [split=test] [output=PATH] [device=auto]",
             "                          [batch_size=N] [save_predictions=PATH] [evaluator.KEY=VALUE ...]",
             "         writes RUN/eval_<split>/metrics.json (or output=PATH) and its plots beside it"]
    for task in all_tasks():
        if task.file_options:
            lines.append(_wrap(f"       python evaluate.py {task.file_usage()}", 26))
    return "\n".join(lines) + "\n"


def _wrap(line: str, indent: int, width: int = 100) -> str:
    import textwrap

    return textwrap.fill(line, width, subsequent_indent=" " * indent, break_long_words=False,
                         break_on_hyphens=False)


def usage_predict() -> str:
    """predict.py's usage: the common keys, then each task's own, from the task registry."""
    from zoo.tasks import all_tasks

    modes = [(t.title or t.name, t.predict_usage()) for t in all_tasks() if t.predict_options]
    w = max(len(title) for title, _ in modes) + 2
    lines = ["usage: python predict.py run=DIR [ckpt=PATH] [device=auto] [output=DIR] [key=value ...]",
             "  output=DIR is a folder (created); each mode writes the files named after -> into it",
             "  and prints what it wrote. The run's model decides the mode:"]
    lines += [_wrap(f"  {title + ':':<{w}}{text}", w + 2) for title, text in modes]
    return "\n".join(lines) + "\n"


def __getattr__(name: str) -> str:  # USAGE_EVALUATE / USAGE_PREDICT, generated on first use
    if name == "USAGE_EVALUATE":
        return usage_evaluate()
    if name == "USAGE_PREDICT":
        return usage_predict()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _key_value_entry(argv: list[str] | None, usage: Callable[[], str], fn: Callable[[list[str]], int]) -> int:
    """evaluate.py/predict.py: usage on --help (status 0) or no arguments (status 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help", "help") for a in argv):
        print(usage())
        return 0 if argv else 2
    return _guard(lambda: fn(argv))


def evaluate_main(argv: list[str] | None = None) -> int:
    return _key_value_entry(argv, usage_evaluate, _evaluate)


def _evaluate(argv: list[str]) -> int:
    opts = _options(argv, None, "usage: python evaluate.py --help")
    if "task" in opts:
        from zoo.metrics.files import evaluate_files

        evaluate_files(opts)
        return 0
    evaluate_run(opts)
    return 0


def _split_evaluator_options(opts: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """``evaluator.KEY=VALUE`` options (the run config's ``evaluator:`` node, overridden)
    apart from the rest."""
    rest = {k: v for k, v in opts.items() if not k.startswith("evaluator.")}
    node = {k.split(".", 1)[1]: _yaml(v) for k, v in opts.items() if k.startswith("evaluator.")}
    for k in node:
        if not k or "." in k:
            raise UserError(f"bad option 'evaluator.{k}': use evaluator.KEY=VALUE")
    return rest, node


def evaluate_run(opts: dict[str, str]) -> dict[str, Any]:
    """Evaluate a run's checkpoint on a split; print a table; write metrics.json (+ plots)."""
    from omegaconf import OmegaConf

    from zoo.engine.evaluation import eval_loader, evaluate
    from zoo.engine.run import load_run
    from zoo.engine.utils import amp_dtype, flat_numbers, format_table, write_json
    from zoo.tasks import task_of
    from zoo.tasks.base import parse_options

    opts, node = _split_evaluator_options(opts)
    spec = _run_eval_options()
    o = parse_options(opts, spec, "evaluate.py run=DIR", ["task", "evaluator.KEY"])
    split = o["split"]
    r = load_run(o["run"], o["ckpt"], o["device"], eval_batch_size=o["batch_size"])
    run_dir, cfg, data, model, device, ckpt_path, ckpt = (
        r.run_dir, r.cfg, r.data, r.model, r.device, r.ckpt_path, r.ckpt)
    if split not in data.splits:
        raise UserError(f"unknown split '{split}'; valid splits: {', '.join(data.splits)}")
    task = task_of(model)
    evaluator_node = OmegaConf.to_container(cfg.evaluator, resolve=True) if cfg.get("evaluator") else {}
    evaluator_node.update(node)
    evaluator = task.build_evaluator(model, data.meta, evaluator_node or None)
    keep: list | None = [] if o["save_predictions"] else None
    metrics = evaluate(model, eval_loader(data, split, device), evaluator, device,
                       amp_dtype(cfg.trainer.get("amp", "off"), device), progress=True,
                       desc=f"evaluate {split}", keep_predictions=keep,
                       on_first_batch=lambda batch, preds: task.check_output(preds, batch))
    out = Path(o["output"]) if o["output"] else run_dir / f"eval_{split}" / "metrics.json"
    result = {**flat_numbers(metrics), "split": split, "checkpoint": str(ckpt_path),
              "step": ckpt.get("step")}
    result.update({k: v for k, v in metrics.items() if k not in result})
    write_json(out, result)
    task.save_plots(evaluator, out.parent)
    if keep is not None:
        task.save_predictions(Path(o["save_predictions"]), keep, data.meta)
        print(f"predictions written to {o['save_predictions']}")
    print(format_table(metrics, f"{split} metrics of {ckpt_path} (step {ckpt.get('step')}):"))
    print(f"written: {out}")
    return result


# --------------------------------------------------------------------------- predict
def predict_main(argv: list[str] | None = None) -> int:
    return _key_value_entry(argv, usage_predict, _predict)


def _predict(argv: list[str]) -> int:
    import torch

    from zoo.engine.run import load_run, load_run_config, run_dir_of
    from zoo.tasks import get_task

    opts = _options(argv, None, "usage: python predict.py --help")
    run, ckpt = opts.pop("run", None), opts.pop("ckpt", None)
    device, output = opts.pop("device", "auto"), opts.pop("output", None)
    if output is not None and not output.strip():
        raise UserError("output= needs a folder name")
    # The run's task checks every option (type and range) before the data and model are built.
    task = get_task(_declared_task(load_run_config(run_dir_of(run, ckpt))))
    task.parse_predict(opts)
    r = load_run(run, ckpt, device)
    r.model.eval()
    with torch.no_grad():
        written = task.predict(r, opts, Path(output) if output else None)
    _print_written(written)
    return 0


def _declared_task(cfg: Any) -> str:
    """The task named by the class a run's model config builds (imported, not built)."""
    from hydra.utils import get_class

    try:
        cls = get_class(str(cfg.model._target_))
    except Exception as e:
        raise UserError(f"cannot import the run's model {cfg.model.get('_target_')}: "
                        f"{str(e).splitlines()[0]}") from None
    name = getattr(cls, "task", "")
    if not name:
        raise UserError(f"{cls.__name__} declares no task; it has no predict.py mode")
    return str(name)


def _print_written(paths: list[Path]) -> None:
    """One line per folder: ``wrote DIR/: a.png, b.png, ...``."""
    by_dir: dict[Path, list[str]] = {}
    for p in paths:
        by_dir.setdefault(Path(p).parent, []).append(Path(p).name)
    for folder, names in by_dir.items():
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        print(f"wrote {folder}/: {shown}")


# --------------------------------------------------------------------------- solve
USAGE_SOLVE = """\
usage: python solve.py [problem=NAME] [algo=NAME] [heuristic=NAME] [key=value ...]

  problem=NAME          which problem (configs/problem/), default grid
  algo=NAME             which algorithm (configs/algo/), default astar
  heuristic=NAME        for greedy and astar: one of the problem's (null: its first)
  problem.start=[1,2,3,4,5,6,0,7,8]   problem.seed=N   problem.n=N   an instance
  algo.graph=false      tree search (an open list only) instead of graph search
  algo.reopen=false     A*: a cheaper path to a closed state is dropped, not reopened
  algo.max_expansions=N algo.max_seconds=S   give up past either (exit status 1)
  seed=N                the algorithm's random choices
  hydra.run.dir=DIR     where the run directory goes (default: a new
                        outputs/DATE/TIME_PROBLEM_ALGO, with -2, -3, ... if that exists)
  --cfg job|all         print the composed config (--resolve: resolved) without solving
  --config-dir DIR      your own problem/ and algo/ configs beside the shipped ones
  -m algo=bfs,ids,ucs,astar problem=grid   a sweep: one run each under multirun/DATE/TIME/N,
                        then one table of them (printed, and table.md in the sweep directory);
                        Hydra's launchers as for train.py (hydra/launcher=joblib, ...)

A run directory holds config.yaml (resolved), result.json (path, cost, steps, expanded,
generated, max_frontier, seconds, solved, optimal, optimal_cost, ...) and solution.png.

exit status: 0 solved, or no solution exists   1 gave up (a limit)   2 a mistake (one line)
"""

SOLVE_GROUPS = ("problem", "algo")
RESULT_COLUMNS = ("problem", "algo", "heuristic", "solved", "cost", "optimal", "expanded",
                  "generated", "max_frontier", "seconds")


def solve_main(argv: list[str] | None = None, config_dir: Path | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return _guard(lambda: _solve_entry(argv, config_dir))


def _solve_entry(argv: list[str], config_dir: Path | None) -> int:
    cdir = _config_dir(config_dir, argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE_SOLVE + "\navailable configs:\n" + _listing(cdir, SOLVE_GROUPS))
        return 0
    if any(a in ("--cfg", "-c") for a in argv):
        return _print_solve_config(cdir, argv)
    if any(a in ("-m", "--multirun") for a in argv):
        return _multirun([a for a in argv if a not in ("-m", "--multirun")], cdir,
                         entry="solve", report=_solve_table)
    return _solve(argv, cdir)


def _check_options(argv: list[str]) -> None:
    for a in argv:
        if a.startswith("-"):
            raise UserError(f"unknown option '{a}'; arguments are key=value overrides (see --help)")


def _check_solve_choices(cdir: Any, overrides: list[str]) -> None:
    from zoo.engine.config import list_group
    from zoo.errors import choices

    for ov in overrides:
        key, _, value = ov.partition("=")
        key = key.lstrip("+~")
        if key in SOLVE_GROUPS:
            valid = list_group(cdir, key)
            if value not in valid:
                raise UserError(f"unknown {key} '{value}'; valid choices: {choices(valid)}")


def _compose_solve(cdir: Any, argv: list[str]) -> Any:
    from zoo.engine.config import compose

    _check_options(argv)
    _check_solve_choices(cdir, argv)
    return compose(cdir, "solve", argv)


def _print_solve_config(cdir: Any, argv: list[str]) -> int:
    from omegaconf import OmegaConf

    from zoo.engine.config import resolved

    args = list(argv)
    i = next(i for i, a in enumerate(args) if a in ("--cfg", "-c"))
    which = args[i + 1] if i + 1 < len(args) else ""
    if which not in ("job", "all"):
        raise UserError(f"--cfg takes job or all, got '{which or 'nothing'}'")
    del args[i:i + 2]
    resolve = "--resolve" in args
    cfg = _compose_solve(cdir, [a for a in args if a != "--resolve"])
    if which == "job":
        cfg = OmegaConf.create(resolved(cfg)) if resolve else OmegaConf.masked_copy(
            cfg, [k for k in cfg if k != "hydra"])
    print(OmegaConf.to_yaml(cfg), end="")
    return 0


def _solve(argv: list[str], cdir: Any) -> int:
    """One search: compose, build the problem and the algorithm, solve, write the run."""
    import math
    import random

    from omegaconf import OmegaConf

    from zoo.engine.config import build, resolved
    from zoo.engine.run import claim_run_dir
    from zoo.engine.utils import write_json
    from zoo.search.base import Algorithm, Problem

    cfg = _compose_solve(cdir, argv)
    names = {k: str(v) for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    try:
        run_dir = Path(cfg.hydra.run.dir)
    except Exception as e:
        raise UserError(f"bad hydra.run.dir: {str(e).splitlines()[0]}") from None
    explicit = any(o.lstrip("+").startswith("hydra.run.dir=") for o in argv)
    if explicit and (run_dir / "result.json").exists():
        raise UserError(f"{run_dir} already holds a run (result.json); choose another hydra.run.dir")
    del cfg["hydra"]
    cfg.run_info = {"choices": names, "overrides": list(argv),
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    plain = resolved(cfg)
    problem = build(cfg.problem, "problem")
    algo = build(cfg.algo, "algo")
    if not isinstance(problem, Problem) or not isinstance(algo, Algorithm):
        raise UserError("problem._target_ must build a zoo.search Problem and algo._target_ an Algorithm")
    label = f"problem={names.get('problem')} algo={names.get('algo')}"
    try:
        result = algo.solve(problem, random.Random(plain.get("seed", 0)))
    except NotImplementedError as e:
        missing = _missing_problem_method(e)
        if missing is None:
            raise
        raise UserError(f"algo={names.get('algo')} does not suit problem={names.get('problem')}: it "
                        f"needs {missing}(), which {type(problem).__name__} does not define") from None
    optimum = None
    if "gave_up" not in result.extra:
        optimum = problem.optimal_cost()
        if result.optimal is None and optimum is not None and result.cost is not None:
            result.optimal = bool(result.solved and math.isclose(result.cost, optimum, rel_tol=1e-9))
    run_dir = claim_run_dir(run_dir) if not explicit else run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(plain | {"run_info": OmegaConf.to_container(cfg.run_info)}),
                   run_dir / "config.yaml")
    heuristic = result.extra.get("heuristic")
    out = {"problem": names.get("problem"), "algo": names.get("algo"), "heuristic": heuristic,
           "solved": result.solved, "path": result.path, "cost": result.cost,
           # local search reports its own step count (its path is [start, final])
           "steps": result.extra.get("steps", len(result.path) - 1 if result.path else None),
           "expanded": result.expanded, "generated": result.generated,
           "max_frontier": result.max_frontier, "seconds": result.seconds,
           "optimal": result.optimal, "optimal_cost": optimum}
    out.update({k: v for k, v in result.extra.items() if k not in out})
    write_json(run_dir / "result.json", out)
    picture = run_dir / "solution.png"
    result.extra["title"] = names.get("algo", "") + (f" ({heuristic})" if heuristic else "")
    problem.draw(result, picture)
    del result.extra["title"]
    _print_result(label, out)
    written = [run_dir / "result.json"] + ([picture] if picture.exists() else [])
    print(f"written: {', '.join(str(p) for p in written)}")
    return 1 if result.extra.get("gave_up") else 0


def _missing_problem_method(e: NotImplementedError) -> str | None:
    """The Problem method an algorithm called that the problem does not define (its base
    version raised), or None when the error came from elsewhere."""
    from zoo.search.base import Problem

    base = {f.__code__: name for name, f in vars(Problem).items() if hasattr(f, "__code__")}
    tb, found = e.__traceback__, None
    while tb is not None:
        found = base.get(tb.tb_frame.f_code, found)
        tb = tb.tb_next
    return found


def _print_result(label: str, out: dict[str, Any]) -> None:
    h = f" heuristic={out['heuristic']}" if out.get("heuristic") else ""
    if out["solved"]:
        verdict = ""
        if out["optimal"] is not None:
            verdict = " (optimal)" if out["optimal"] else f" (not optimal: the optimum is {out['optimal_cost']:g})"
        cost = out["cost"]
        head = f"solved: cost {cost:g}{verdict}" if isinstance(cost, (int, float)) else "solved"
        if out["steps"] is not None:
            head += f", {out['steps']} steps"
    elif out.get("gave_up"):
        head = out["gave_up"]
    elif out.get("final_value") is not None and isinstance(out.get("cost"), (int, float)):
        # local search on a problem with no goal test (a large TSP): the best state found
        verdict = ""
        if out["optimal"] is not None:
            verdict = " (optimal)" if out["optimal"] else f" (the optimum is {out['optimal_cost']:g})"
        head = f"done: cost {out['cost']:g}{verdict}, {out['steps']} steps (no goal to test)"
    else:
        head = "no solution exists"
    print(f"{label}{h}: {head}")
    print(f"  expanded {out['expanded']}  generated {out['generated']}  "
          f"max frontier {out['max_frontier']}  {out['seconds']:.3f} s")


def _solve_table(sweep_dir: Path, runs: list[Path]) -> None:
    """One table of a sweep's runs: printed, and written to ``SWEEP/table.md``."""
    import json

    import yaml

    header = ["run", "overrides", *RESULT_COLUMNS]
    rows = []
    for d in runs:
        try:
            r = json.loads((d / "result.json").read_text())
            info = yaml.safe_load((d / "config.yaml").read_text()).get("run_info", {})
            given = " ".join(o for o in info.get("overrides", []) if not o.startswith("hydra."))
        except (OSError, ValueError, AttributeError):
            rows.append([d.name, "(failed)"] + [""] * len(RESULT_COLUMNS))
            continue
        if not r.get("solved") and r.get("gave_up"):
            r["solved"] = "gave up"
        rows.append([d.name, given] + [_cell(r.get(k)) for k in RESULT_COLUMNS])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths)) + " |"

    text = "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, rows)])
    print(text)
    (sweep_dir / "table.md").write_text(text + "\n")
    print(f"written: {sweep_dir / 'table.md'}")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 1 else f"{v:g}"
    return str(v)
