"""The life of a run: training as a library function, and rebuilding a run from its
directory (for evaluate.py, predict.py and resume).

``train(cfg, run_dir, resume=False)`` is what ``python train.py`` does once the command
line is parsed: it claims and locks the run directory, writes ``config.yaml``, keeps
``train.log``, sets up DDP under torchrun, fits, and says how the run ended.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from zoo.engine import checkpoint as C
from zoo.engine.config import check_run_config
from zoo.errors import TrainingCrashed, UserError


def run_dir_of(run: str | None, ckpt: str | None) -> Path:
    if run:
        d = Path(run)
        if not d.is_dir():
            raise UserError(f"run directory does not exist: {d}")
        return d
    if ckpt:
        p = Path(ckpt)
        if not p.is_file():
            raise UserError(f"checkpoint not found: {p}")
        # <run>/checkpoints/<name>.pt
        return p.resolve().parent.parent
    raise UserError("give run=DIR (a training run directory) or ckpt=PATH")


def load_run_config(run_dir: Path) -> DictConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml errors
        raise UserError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    for key in ("model", "data"):
        if key not in cfg:
            raise UserError(f"{path} has no '{key}' section; is it a zoo run config?")
    check_run_config(cfg, where=str(path))
    return cfg


def checkpoint_path(run_dir: Path, ckpt: str | None) -> Path:
    if ckpt:
        return Path(ckpt)
    best = Path(run_dir) / "checkpoints" / "best.pt"
    if best.is_file():
        return best
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if last.is_file():
        return last
    raise UserError(f"no checkpoint in {Path(run_dir) / 'checkpoints'} (expected best.pt or last.pt)")


def load_model_weights(model: torch.nn.Module, path: Path) -> dict[str, Any]:
    ckpt = C.load(path)
    C.load_model_state(model, ckpt["model"], path)
    return ckpt


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: DictConfig
    data: Any
    model: torch.nn.Module
    device: torch.device
    ckpt_path: Path
    ckpt: dict[str, Any]


def load_run(run: str | None, ckpt: str | None, device: str = "auto",
             eval_batch_size: int | None = None) -> LoadedRun:
    """Rebuild data and model from a run directory and load its best (or the chosen) checkpoint."""
    from zoo.engine.config import build
    from zoo.engine.utils import select_device

    run_dir = run_dir_of(run, ckpt)
    cfg = load_run_config(run_dir)
    dev = select_device(device)
    if eval_batch_size:
        cfg.data.eval_batch_size = int(eval_batch_size)
    data = build(cfg.data, "data")
    model = build(cfg.model, "model").to(dev)
    path = checkpoint_path(run_dir, ckpt)
    state = load_model_weights(model, path)
    return LoadedRun(run_dir, cfg, data, model, dev, path, state)


# =========================================================================== training
LAST = Path("checkpoints") / "last.pt"

# Keys that may change when a run is resumed, and take effect from the next step on: they
# decide how long the run goes on and how it is watched, not what it has learnt so far.
# A key ending in "." stands for every key under it.
RESUME_MAY_CHANGE = (
    "trainer.max_steps", "trainer.max_epochs", "trainer.val_every", "trainer.val_every_steps",
    "trainer.ckpt_every",
    "trainer.log_every", "trainer.patience", "trainer.progress", "trainer.device",
    "trainer.max_time", "trainer.limit_val_batches", "trainer.interrupt_at",
    "trainer.on_nonfinite", "trainer.compile",
    "data.eval_batch_size", "data.num_workers", "data.persistent_workers",
    "data.prefetch_factor", "data.root", "logger.",
)
# Changing one of these may turn a finished run into one with more to do.
LENGTH_KEYS = ("trainer.max_steps", "trainer.max_epochs", "trainer.patience", "trainer.max_time")
# Why the other keys of a family cannot change mid-run.
_REFUSED_BECAUSE = {
    "model": "the weights were built and trained with the old value",
    "data": "the batches drawn so far came from the old value",
    "optim": "the restored optimizer keeps its saved state and rates",
    "sched": "the restored schedule keeps its saved state",
    "seed": "the data order and every random state are restored from the checkpoint",
    "init_from": "a resumed run continues from its own last.pt",
}


def resumable_keys() -> str:
    return ", ".join(k + "*" if k.endswith(".") else k for k in RESUME_MAY_CHANGE)


def _may_change(key: str) -> bool:
    return any(key.startswith(k) if k.endswith(".") else key == k for k in RESUME_MAY_CHANGE)


def new_config(config_dir: Path, overrides: list[str]) -> tuple[DictConfig, Path, bool]:
    """Compose a new run's config. Returns ``(cfg, run_dir, explicit)``: ``explicit`` is
    False when ``run_dir`` is the default (time and model name), which ``train`` then
    makes unique."""
    from zoo.engine.config import compose

    cfg = compose(config_dir, "train", overrides)
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    try:
        run_dir = Path(cfg.hydra.run.dir)
    except Exception as e:
        raise UserError(f"bad hydra.run.dir: {str(e).splitlines()[0]}") from None
    explicit = any(o.lstrip("+").startswith("hydra.run.dir=") for o in overrides)
    del cfg["hydra"]
    cfg.run_info = {"choices": choices, "overrides": list(overrides),
                    "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    from zoo import interop

    if cfg.get("init_from") and interop.is_folder(cfg.init_from):
        print("\n".join(interop.adopt_folder_config(cfg)))  # the folder fixes the architecture
    resolve(cfg)
    return cfg, run_dir, explicit


def _check_resumable(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise UserError(f"resume: run directory does not exist: {run_dir}")
    if not (run_dir / LAST).is_file():
        raise UserError(f"resume: {run_dir} has no checkpoints/last.pt to continue from")


def resume_config(run_dir: str | Path, overrides: list[str]) -> DictConfig:
    """The run's own config with the command line's overrides applied.

    Group choices (``model=lenet``) are accepted when they equal the run's; ``hydra.*``
    overrides other than a ``hydra.run.dir`` that names another directory are ignored.
    Whether a changed value may take effect is decided by ``train`` (``resume_changes``).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from zoo.engine.config import GROUPS

    run_dir = Path(run_dir)
    _check_resumable(run_dir)
    cfg = load_run_config(run_dir)
    choices = dict(OmegaConf.to_container(cfg.get("run_info", {}) or {}).get("choices") or {})
    for ov in overrides:
        if ov.startswith("~"):
            raise UserError(f"resume: '{ov}' cannot remove a key from a run's config")
        if "=" not in ov:
            raise UserError(f"bad override '{ov}': expected key=value (e.g. trainer.max_steps=2000)")
        key, text = ov.split("=", 1)
        bare = key.lstrip("+")
        if bare.startswith("hydra."):
            if bare == "hydra.run.dir" and Path(text).resolve() != run_dir.resolve():
                raise UserError(f"resume: {ov} is not the run being resumed ({run_dir}); "
                                "a run continues in its own directory")
            continue
        if bare in GROUPS:
            if (None if text in ("", "null") else text) != choices.get(bare):
                raise UserError(f"resume: '{ov}' differs from the run's {bare} "
                                f"({choices.get(bare)}); a resumed run keeps its {bare}")
            continue
        try:
            value = OverridesParser.create().parse_override(ov).value()
        except HydraException as e:
            raise UserError(f"bad override '{ov}': {str(e).splitlines()[0]}") from None
        if not key.startswith("+") and OmegaConf.select(cfg, bare, default="__missing__") == "__missing__":
            raise UserError(f"bad override '{ov}': key '{bare}' is not in the run's config")
        try:
            OmegaConf.update(cfg, bare, value, merge=True)
        except Exception as e:
            raise UserError(f"bad override '{ov}': {str(e).splitlines()[0]}") from None
    from zoo.engine.config import validate

    validate(cfg)
    return cfg


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def resume_changes(stored: DictConfig, cfg: DictConfig) -> dict[str, tuple[Any, Any]]:
    """``key -> (old, new)`` for every value ``cfg`` changes in the run's config; raises a
    UserError for the first change that cannot take effect exactly mid-run."""
    skip = ("run_info", "resume")
    a = _flat({k: v for k, v in OmegaConf.to_container(stored, resolve=True).items() if k not in skip})
    b = _flat({k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in skip})
    changes = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k, _NONE) != b.get(k, _NONE)}
    for key, (old, new) in changes.items():
        if not _may_change(key):
            why = _REFUSED_BECAUSE.get(key.split(".")[0], "it is not one of the keys that may change")
            raise UserError(f"resume: {key} cannot change when a run continues ({old!r} -> {new!r}): "
                            f"{why}; keys that may change: {resumable_keys()}; or start a new run "
                            f"from its weights with init_from=RUN/checkpoints/last.pt")
    return changes


_NONE = object()


def resolve(cfg: DictConfig) -> None:
    """Resolve interpolations in place; unset (``???``) values are one line."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise UserError(f"config error: {str(e).splitlines()[0]}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(f"config values must be set: {', '.join(missing)} (e.g. {missing[0]}=...)")


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    """``config.yaml``, written whole or not at all (it is rewritten on every resume)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".config.yaml.tmp"
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    os.replace(tmp, run_dir / "config.yaml")


# --------------------------------------------------------------------------- run directory
def claim_run_dir(base: Path) -> Path:
    """Create ``base``, or ``base-2``, ``base-3``, ... whichever does not exist yet.

    ``mkdir`` either creates a directory or fails, so two trainings started in the same
    second (same default name) end up in two directories."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        d = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise UserError(f"cannot find a free run directory name beside {base}")


class RunLock:
    """``RUN/.lock``, held with ``flock`` for a training's whole life.

    The kernel releases it when the process ends, however it ends, so a crash or SIGKILL
    leaves no stale lock. The file stays (it names the last holder); only the lock
    counts. On systems without ``fcntl`` nothing is locked."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:  # Windows
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{run_dir} is in use by another training ({holder}); wait for it "
                            "to end, or choose another hydra.run.dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _open_run(run_dir: Path, resume: bool, unique: bool) -> tuple[Path, RunLock]:
    """Rank 0: the directory to train in, locked and checked."""
    try:
        if unique and not resume:
            run_dir = claim_run_dir(run_dir)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {run_dir}: {e.strerror or e}") from None
    lock = RunLock(run_dir)
    try:
        if resume:
            _check_resumable(run_dir)
        elif (run_dir / LAST).exists():
            raise UserError(f"{run_dir} already holds a run; continue it with resume={run_dir} "
                            "or choose another hydra.run.dir")
    except BaseException:
        lock.release()
        raise
    return run_dir, lock


def _checkpoint_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:
        return None


def _finished(run_dir: Path, changes: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a run that ended (not interrupted) at the step of its last.pt, unless
    the resume changes how long it goes on; else None."""
    if any(k in changes for k in LENGTH_KEYS):
        return None
    try:
        summary = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("interrupted", True):
        return None
    if summary.get("steps") != _checkpoint_step(run_dir / LAST):
        return None  # last.pt moved on after metrics.json (a later resume that stopped)
    return summary


# --------------------------------------------------------------------------- train.log
class _LogFile:
    """Lines as a terminal would keep them: a carriage return (progress bars) overwrites
    the line, so only each bar's last state is written. Flushed line by line, so a killed
    run keeps everything up to its end."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "a", encoding="utf-8")
        self.pending = ""

    def write(self, s: str) -> None:
        self.pending += s
        if "\n" not in self.pending and "\r" not in self.pending:
            return
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.f.write(line.rsplit("\r", 1)[-1] + "\n")
        self.pending = self.pending.rsplit("\r", 1)[-1]  # a bar that never ends its line stays small
        self.f.flush()

    def close(self) -> None:
        last = self.pending.rsplit("\r", 1)[-1]
        if last:
            self.f.write(last + "\n")
        self.f.close()


class _Tee:
    """A text stream that also writes to the run's log (wraps sys.stdout / sys.stderr)."""

    def __init__(self, stream: Any, log: _LogFile) -> None:
        self._stream, self._log = stream, log

    def write(self, s: str) -> int:
        self._log.write(s)
        return self._stream.write(s)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._stream, name)


class RunLog:
    """While open, everything this process prints also goes to ``RUN/train.log`` (appended
    on resume). What native code writes straight to the file descriptors is not seen."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path, self.enabled, self.log = Path(path), enabled, None

    def __enter__(self) -> "RunLog":
        if self.enabled:
            self.log = _LogFile(self.path)
            self.log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
            self._saved = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = _Tee(sys.stdout, self.log), _Tee(sys.stderr, self.log)
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if self.log is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = self._saved
        if exc is not None:  # what the CLI is about to print about it
            report = failure_report(exc)
            if report is not None:
                self.log.write(report[0] + "\n")
        self.log.close()
        self.log = None


# --------------------------------------------------------------------------- how a run ends
def exit_status(summary: dict[str, Any]) -> int:
    """0 for a run that ended (or had nothing left to do); 128 + N for one stopped by
    signal N (130 for SIGINT, 143 for SIGTERM), the shell's convention, so a pre-empted job
    does not look finished."""
    sig = summary.get("signal")
    return 128 + int(sig) if summary.get("interrupted") and sig else 0


def _continue_command(run_dir: Path) -> str:
    from zoo.engine import distributed as D

    n = D.env_world_size()
    launcher = f"torchrun --nproc_per_node={n} train.py" if n > 1 else "python train.py"
    return f"{launcher} resume={run_dir}"


def failure_report(e: BaseException) -> tuple[str, int] | None:
    """What the CLI prints for an exception that ended a command, and its exit status;
    None for an exception that is a bug to show as it is."""
    from zoo.engine.trainer import TrainingStopped

    if isinstance(e, UserError):
        return f"error: {e}", e.exit_code
    if isinstance(e, TrainingStopped):
        return f"error: {e}", 1
    if isinstance(e, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(e, TrainingCrashed):
        cause = e.__cause__ or e
        text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip()
        ckpt = Path(e.checkpoint) if e.checkpoint else None
        what = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}".rstrip(": ")
        if ckpt is not None and ckpt.is_file():
            step = _checkpoint_step(ckpt)
            run_dir = ckpt.parent.parent
            where = (f"the last completed step's state is in {ckpt} (step {step}); "
                     f"continue with: {_continue_command(run_dir)}")
        else:
            where = "no checkpoint was written before it"
        return f"{text}\nerror: training crashed ({what}); {where}", 1
    return None


def train(cfg: DictConfig | None, run_dir: str | Path, resume: bool = False, *,
          unique_dir: bool = False) -> dict[str, Any]:
    """Train one run in ``run_dir`` and return its summary (what ``metrics.json`` holds).

    - ``resume=False``: ``cfg`` is a composed config (``new_config``). With
      ``unique_dir=True`` ``run_dir`` is a name to make unique (``-2``, ``-3``, ...);
      otherwise a directory that already holds a run is refused.
    - ``resume=True``: continue the run in ``run_dir`` from its ``last.pt``. ``cfg`` is the
      run's config with changes (``resume_config``) or None for none; a change that cannot
      take effect exactly is refused (``resume_changes``) and the others are recorded in
      ``config.yaml`` under ``run_info.resumes``. A run that already finished, resumed
      without a change to its length, is not trained again (summary key ``already_finished``).

    Under torchrun every rank calls this; rank 0 owns the directory, its lock and its files.
    A person's mistake raises UserError; an unexpected exception while training raises
    TrainingCrashed from it. ``exit_status(summary)`` maps the summary to a process status.
    """
    from zoo.engine import distributed as D
    from zoo.engine.trainer import Trainer, TrainingStopped
    from zoo.engine.utils import select_device

    run_dir = Path(run_dir)
    changes: dict[str, tuple[Any, Any]] = {}
    if resume:
        _check_resumable(run_dir)
        stored = load_run_config(run_dir)
        cfg = stored if cfg is None else cfg
        changes = resume_changes(stored, cfg)
        cfg.resume = str(run_dir)
    elif cfg is None:
        raise UserError("a new run needs a config")
    resolve(cfg)

    device = select_device(cfg.trainer.device)
    D.init(device)
    lock: RunLock | None = None
    try:
        verdict: dict[str, Any] = {}
        if D.is_main():
            try:
                run_dir, lock = _open_run(run_dir, resume, unique_dir)
                verdict = {"run_dir": str(run_dir),
                           "finished": _finished(run_dir, changes) if resume else None}
            except UserError as e:
                verdict = {"error": str(e)}
        verdict = D.broadcast_object(verdict)
        if verdict.get("error"):
            raise UserError(verdict["error"])
        run_dir = Path(verdict["run_dir"])
        if verdict["finished"] is not None:
            done = verdict["finished"]
            if D.is_main():
                print(f"{run_dir} already finished at step {done.get('steps')}"
                      f"{' (stopped early)' if done.get('stopped_early') else ''}; nothing to do "
                      f"(a larger trainer.max_steps or trainer.max_epochs trains it further)", flush=True)
            return {**done, "already_finished": True}

        with RunLog(run_dir / "train.log", enabled=D.is_main()):
            if resume:
                info = cfg.get("run_info") or OmegaConf.create({})
                earlier = info.get("resumes")
                history = list(OmegaConf.to_container(earlier)) if earlier else []
                history.append({"time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                "overrides": [f"{k}={_yaml_value(new)}" for k, (_, new) in changes.items()]})
                info.resumes = history
                cfg.run_info = info
            if D.is_main():
                save_config(cfg, run_dir)
                print(f"run dir: {run_dir}  (model={_choice(cfg, 'model')}, data={_choice(cfg, 'data')}, "
                      f"device={device}, processes={D.world_size()}"
                      f"{', resumed' if resume else ''})", flush=True)
            D.barrier()
            try:
                summary = Trainer(cfg, run_dir, device, resume=resume).fit()
            except (UserError, TrainingStopped, TrainingCrashed):
                raise
            except Exception as e:
                # The trainer's own crash report (``.checkpoint``, raised from the original)
                # or any other exception: either way one TrainingCrashed from the original.
                original = e.__cause__ if hasattr(e, "checkpoint") and e.__cause__ else e
                saved = getattr(e, "checkpoint", None) or (
                    str(run_dir / LAST) if (run_dir / LAST).is_file() else None)
                raise TrainingCrashed(f"training crashed: {type(original).__name__}: {original}",
                                      checkpoint=saved) from original
            _say_how_it_ended(summary, run_dir, cfg)
            return summary
    finally:
        if lock is not None:
            lock.release()
        D.cleanup()


def _say_how_it_ended(summary: dict[str, Any], run_dir: Path, cfg: DictConfig) -> None:
    from zoo.engine import distributed as D

    if not D.is_main() or not summary.get("interrupted"):
        return
    sig = summary.get("signal")
    if sig:
        print(f"interrupted by {signal.Signals(int(sig)).name} at step {summary.get('steps')}; "
              f"continue with: {_continue_command(run_dir)}", file=sys.stderr, flush=True)
    else:
        print(f"stopped at step {summary.get('steps')} (trainer.interrupt_at="
              f"{cfg.trainer.get('interrupt_at')}); continue with: {_continue_command(run_dir)}", flush=True)


def _choice(cfg: DictConfig, group: str) -> str:
    try:
        return str(cfg.run_info.choices[group])
    except Exception:
        return str(cfg[group].get("_target_", "?")).rsplit(".", 1)[-1]


def _yaml_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)
