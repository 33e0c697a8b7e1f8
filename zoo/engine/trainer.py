"""The one training loop every model runs through.

The loop knows nothing about particular models: it asks the model for its optimizer
groups and step strategy (the contract in ``zoo/models/base.py``), lets
``zoo.engine.step`` run each step, asks ``zoo.engine.cadence`` when to log, validate,
checkpoint and stop, and keeps the run directory (checkpoints, TensorBoard events,
metrics.json, pictures) complete at every moment.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from zoo.engine import checkpoint as C
from zoo.engine import distributed as D
from zoo.engine import loader as L
from zoo.engine.cadence import BestTracker, Cadence, Plan
from zoo.engine.config import build
from zoo.engine.ema import ModelEMA
from zoo.engine.evaluation import eval_loader, evaluate
from zoo.engine.logging import build_logger
from zoo.engine.optim import build_optimizers, build_schedulers, current_lr
from zoo.engine.step import NonFinite, StepModule, StepOutcome, Stepper
from zoo.engine.utils import (
    amp_dtype,
    batch_size_of,
    flat_numbers,
    format_table,
    seed_everything,
    set_deterministic,
    to_device,
    write_json,
)
from zoo.errors import TrainingCrashed, UserError  # noqa: F401 - TrainingCrashed re-exported
from zoo.tasks import task_of


class TrainingStopped(Exception):
    """A run that cannot go on (non-finite loss): printed as one line, exit status 1."""


def build_data(cfg: DictConfig) -> Any:
    return build(cfg.data, "data")


def build_model(cfg: DictConfig) -> nn.Module:
    return build(cfg.model, "model")


# Why a run ended early (None: it ran to its last step).
INTERRUPTED, TIME_UP, EARLY, DONE = "interrupted", "time", "early", "done"


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: Path, device: torch.device,
                 resume: bool = False) -> None:
        self.cfg, self.run_dir, self.device, self.resume = cfg, Path(run_dir), device, resume
        self.t = cfg.trainer
        self.ckpt_dir = self.run_dir / "checkpoints"
        self._stop_signal: int | None = None
        self.stepper: Stepper | None = None

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        cfg, t = self.cfg, self.t
        set_deterministic(bool(t.deterministic))
        seed_everything(int(cfg.seed))
        self.data = build_data(cfg)
        self.model = build_model(cfg)
        self.model.to(self.device)
        if t.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.amp = amp_dtype(t.amp, self.device)
        self.task = task_of(self.model)
        self.evaluator = self.task.build_evaluator(self.model, self.data.meta, cfg.get("evaluator"))

        if not self.resume:
            if cfg.get("init_from"):
                self._init_from(cfg.init_from)
            self.model.on_train_start(self.data, str(self.run_dir))

        # trainer.strategy: an fsdp run writes sharded checkpoints at any process count;
        # its model is sharded only when there are several processes.
        self.sharded = t.get("strategy", "ddp") == "fsdp"
        self.fsdp = self.sharded and D.is_dist()
        if self.sharded and t.ema:
            raise UserError("trainer.ema is not supported with trainer.strategy=fsdp "
                            "(the average would need the whole model on every process)")
        if t.get("sync_batchnorm") and D.is_dist() and not self.sharded:
            if self.device.type != "cuda":
                raise UserError("trainer.sync_batchnorm=true needs CUDA devices: torch's "
                                "SyncBatchNorm has no CPU kernel (set trainer.sync_batchnorm=false)")
            D.convert_sync_batchnorm(self.model)
        self.step_module: nn.Module | None = None
        if self.fsdp:
            # the root unit is the step wrapper: every forward (training and prediction)
            # enters through it, so FSDP gathers the root's parameters first
            self.step_module = StepModule(self.model)
            D.fully_shard_model(self.step_module, list(self.model.fsdp_units()), self.device)

        self.groups = self.model.optimizer_groups()
        self.optimizers = build_optimizers(self.groups, cfg.optim, self.device) if self.groups else {}
        # A grouped model without optimizer groups is fitted in closed form: no steps.
        self.closed_form = not self.optimizers and self.model.step_strategy != "manual"
        self.train_loader = self._train_loader()
        self.accumulate = int(t.accumulate or 1)
        if self.accumulate < 1:
            raise UserError(f"trainer.accumulate must be >= 1, got {t.accumulate}")
        if self.accumulate > self.batches_per_epoch:
            raise UserError(f"trainer.accumulate={self.accumulate} is more than the "
                            f"{self.batches_per_epoch} batches of an epoch")
        self.steps_per_epoch = self.batches_per_epoch // self.accumulate
        if t.max_steps is not None:
            self.total_steps = int(t.max_steps)
        elif t.max_epochs is not None:
            self.total_steps = int(t.max_epochs) * self.steps_per_epoch
        else:
            raise UserError("set trainer.max_steps or trainer.max_epochs")
        self.cadence = Cadence.from_config(t, self.total_steps)
        self.schedulers = build_schedulers(self.optimizers, cfg.sched, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        self.ema = ModelEMA(self.model, float(t.ema), warmup=bool(t.get("ema_warmup", True))) if t.ema else None
        self.tracker = BestTracker(t.monitor, str(t.mode), t.patience, save_best=self._save_best)

        # Progress counters; all restored on resume.
        self.step = 0            # optimizer steps done
        self.epoch = 0
        self.batch_in_epoch = 0  # micro-batches of the current epoch already consumed
        self.last_metrics: dict[str, Any] = {}
        self.train_time = 0.0
        self.validations = 0
        self.last_val_step: int | None = None
        if self.resume:
            self._load_last()
        self._done_position = (self.epoch, self.batch_in_epoch)  # of the last completed step
        self._saved_step: int | None = self.step if self.resume else None

        wrapped: nn.Module | None = self.step_module
        if D.is_dist() and self.optimizers and not self.fsdp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            wrapped = DDP(StepModule(self.model),
                          device_ids=[self.device.index] if self.device.type == "cuda" else None,
                          find_unused_parameters=len(self.groups) > 1
                          or self.model.step_strategy == "manual")
        if t.compile:
            wrapped = torch.compile(wrapped if wrapped is not None else StepModule(self.model))
        self.stepper = Stepper(model=self.model, wrapped=wrapped, groups=self.groups,
                               optimizers=self.optimizers, schedulers=self.schedulers,
                               scaler=self.scaler, clip=float(t.clip_grad_norm) if t.clip_grad_norm else None,
                               device=self.device, amp=self.amp, ema=self.ema)
        self.logger = build_logger(cfg.get("logger"), self.run_dir, enabled=D.is_main())

    def _train_loader(self) -> DataLoader:
        ds = self.data.dataset("train")
        if len(ds) == 0:
            raise UserError("the training split is empty")
        loader, self.sampler, self.batches_per_epoch = L.train_loader(
            self.data, ds, seed=int(self.cfg.seed), device=self.device)
        return loader

    def _init_from(self, path: str) -> None:
        lines = C.init_weights(self.model, path)
        if D.is_main():
            print("\n".join(lines))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """The checkpoint. In a sharded run the weights and optimizer states are written
        by ``save`` as shards, and this holds the plain values."""
        return {
            "format": C.FORMAT_VERSION,
            "model": None if self.sharded else self.model.state_dict(),
            "optimizers": {} if self.sharded else {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.state_dict() if self.ema else None,
            # state a model carries between steps outside its weights (ZooModel.training_state)
            "model_state": self.model.training_state(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "best": self.tracker.state_dict(),
            "last_metrics": flat_numbers(self.last_metrics),
            "train_time": self.train_time, "validations": self.validations,
            "last_val_step": self.last_val_step,
            "rng": C.rng_state(),
            **({"world_size": D.world_size()} if self.sharded else {}),
        }

    def save(self, name: str, state: dict[str, Any] | None = None) -> None:
        if self.sharded and state is None:
            state = self._sharded_state(name)
        if D.is_main():
            C.save_atomic(state if state is not None else self.state(), self.ckpt_dir / name)
            if self.sharded and state.get("sharded"):
                for old in self.ckpt_dir.glob(f"{Path(name).stem}.dcp.*"):
                    if old.name != state["sharded"]:
                        _remove_tree(old)
        if name == "last.pt":
            self._saved_step = self.step

    def _sharded_state(self, name: str) -> dict[str, Any]:
        """Write the shards of ``name`` (every rank, into a folder of its own step), and
        return the plain state that names it. ``last.pt`` is replaced only after the
        whole folder exists, so it always names a complete one."""
        state = self.state()
        folder = None
        if D.is_main():  # a new name, never the folder the current last.pt names
            folder, k = f"{Path(name).stem}.dcp.{self.step}", 1
            while (self.ckpt_dir / folder).exists():
                folder, k = f"{Path(name).stem}.dcp.{self.step}-{k}", k + 1
        folder = D.broadcast_object(folder)
        C.save_sharded(self.ckpt_dir / folder, self.model, self.optimizers)
        D.barrier()
        state["sharded"] = folder
        state["extra_states"] = C.extra_states(self.model)
        return state

    def _save_best(self) -> None:
        state = self.state()
        if self.ema:  # best.pt holds the weights that were validated
            state["model"] = self.ema.model_state(self.model)
        if self.sharded:  # whole weights (collective), as any run's best.pt
            state["model"] = C.full_weights(self.model) if self.fsdp else self.model.state_dict()
        self.save("best.pt", state)

    def _load_last(self) -> None:
        ckpt = C.load(self.ckpt_dir / "last.pt", full=False)
        if bool(ckpt.get("sharded")) != self.sharded:
            raise UserError("cannot resume: the checkpoint was written with trainer.strategy="
                            f"{'fsdp' if ckpt.get('sharded') else 'ddp'} and this run uses "
                            f"{'fsdp' if self.sharded else 'ddp'}")
        if self.sharded:  # any process count: DCP reshards the saved shards onto this one
            C.load_sharded(self.ckpt_dir / ckpt["sharded"], self.model, self.optimizers)
            C.load_extra_states(self.model, ckpt.get("extra_states") or {})
            saved_world = int(ckpt.get("world_size", D.world_size()))
            if saved_world != D.world_size() and D.is_main():
                print(f"resuming a run saved by {saved_world} processes on {D.world_size()}: "
                      f"the rest of epoch {ckpt['epoch']} is split over the new processes",
                      flush=True)
        else:
            C.load_model_state(self.model, ckpt["model"], self.ckpt_dir / "last.pt")
        missing = set() if self.sharded else set(self.optimizers) ^ set(ckpt["optimizers"])
        if missing:
            raise UserError(f"cannot resume: the checkpoint's optimizer groups "
                            f"{sorted(ckpt['optimizers'])} differ from the model's {sorted(self.optimizers)}")
        for k, opt in ({} if self.sharded else self.optimizers).items():
            opt.load_state_dict(ckpt["optimizers"][k])
        for k, s in self.schedulers.items():
            saved = ckpt["schedulers"][k]
            if "lr_lambdas" in saved and not isinstance(s, torch.optim.lr_scheduler.LambdaLR):
                raise UserError("cannot resume: this run's schedule was the old hand-written "
                                "one-cycle, and sched=onecycle is now torch's OneCycleLR")
            s.load_state_dict(saved)
        if self.scaler and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        self.model.load_training_state(ckpt.get("model_state"))
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        self.tracker.load_state_dict(ckpt["best"])
        self.last_metrics = dict(ckpt.get("last_metrics") or {})
        self.train_time = float(ckpt.get("train_time", 0.0))
        self.validations = int(ckpt.get("validations", 0))
        self.last_val_step = ckpt.get("last_val_step")
        C.set_rng_state(ckpt["rng"])

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, Any]:
        loader = eval_loader(self.data, "val", self.device)
        want_images = self.logger.wants_images(self.validations)

        def pictures(batch: Any, preds: Any) -> None:
            self.task.check_output(preds, batch)  # a wrong output form is one line, not a bad metric
            if want_images:
                self.logger.images(self.task.images(batch, preds, self.data.meta), self.step)

        with self.ema.swapped() if self.ema else contextlib.nullcontext():
            metrics = evaluate(self.model, loader, self.evaluator, self.device, self.amp,
                               limit_batches=self.t.limit_val_batches, on_first_batch=pictures,
                               predict=self._sharded_predict if self.fsdp else None)
        self.validations += 1
        self.last_val_step = self.step
        nums = flat_numbers(metrics)
        self.last_metrics = metrics
        self.logger.scalars({f"val/{k}": v for k, v in nums.items()}, self.step)
        self.tracker.update(nums, self.step)  # writes best.pt when the monitor improved
        return metrics

    def _sharded_predict(self, batch: Any) -> Any:
        # through the FSDP root, which gathers the parameters no block unit holds
        return self.step_module(self.model.predict, batch)

    def _validate_and_report(self, bar: Any) -> None:
        metrics = self.validate()
        if D.is_main():
            nums = flat_numbers(metrics)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in list(nums.items())[:6])
            _say(bar, f"step {self.step} epoch {self.epoch}: {shown}")

    # ------------------------------------------------------------------ training
    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGINT/SIGTERM ask for a clean stop; returns the handlers they replaced."""
        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None:  # second signal: stop now
                raise KeyboardInterrupt
            self._stop_signal = signum
            if D.is_main():
                print(f"\nsignal {signum}: finishing the current step, saving checkpoints/last.pt "
                      "(send again to stop at once)", flush=True)

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not in the main thread
                pass
        return previous

    def fit(self) -> dict[str, Any]:
        """Train to the last step (or a stop), validate, save; returns the final summary.

        The stop-signal handlers live only while fitting: left installed they would keep
        this trainer (and its process group, under DDP) alive and swallow a later Ctrl-C.
        An unexpected error mid-training leaves ``last.pt`` at the last completed step
        and raises ``TrainingCrashed`` (the error chained).
        """
        self.setup()
        previous = self._install_signal_handlers()
        try:
            return self._fit()
        except (UserError, TrainingStopped):
            raise
        except Exception as e:
            path, step = self._save_after_crash()
            where = (f"last.pt holds step {step}: {path}" if path is not None
                     else "no checkpoint was written")
            raise TrainingCrashed(f"training failed at step {self.step + 1} "
                                  f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                                  f"{where}", path, step) from e
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
            L.shutdown(getattr(self, "train_loader", None))

    def _fit(self) -> dict[str, Any]:
        if self.closed_form:  # nothing to step: validate and save once
            self.step = self.total_steps = 0
            self.validate()
            self.save("last.pt")
            return self._finish(None)
        self.model.train()
        self._t_log, self._samples = time.perf_counter(), 0
        self._start_time = time.perf_counter() - self.train_time
        self._max_time = float(self.t.max_time) if self.t.max_time else None
        self._interrupt_at = int(self.t.interrupt_at) if self.t.interrupt_at is not None else None
        self._skip_nonfinite = self.t.on_nonfinite == "skip"
        stop = DONE if self.step >= self.total_steps else None
        with self._progress_bar() as bar:
            for window, ends_epoch in ([] if stop else self._windows()):
                stop = self._train_window(window, ends_epoch, bar)
                if stop:
                    break
        if stop == DONE and self.last_val_step != self.step:  # resumed after the last step
            self._validate_and_report(None)
            self.save("last.pt")
        return self._finish(stop)

    def _windows(self) -> Iterator[tuple[list[Any], bool]]:
        """Accumulation windows of micro-batches, on the device, with whether each one
        ends its epoch (the leftover micro-batches that fill no window are not loaded).
        The consumer advances ``epoch`` at an epoch's end, so a checkpoint written after
        the step holds the right position; this generator resumes from it."""
        bs, move, cuda = self.data.batch_size, self.device.type != "cpu", self.device.type == "cuda"
        while True:
            self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * bs)
            window: list[Any] = []
            yielded = False
            for batch in self.train_loader:
                self.batch_in_epoch += 1
                self._samples += batch_size_of(batch)
                window.append(to_device(batch, self.device, non_blocking=cuda) if move else batch)
                if len(window) == self.accumulate:
                    ends = self.batch_in_epoch + self.accumulate > self.batches_per_epoch
                    yield window, ends
                    yielded, window = True, []
                    if ends:
                        break
            if not yielded:  # a checkpoint written at an epoch's very end (older runs)
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _train_window(self, window: list[Any], ends_epoch: bool, bar: Any) -> str | None:
        """One training step over ``window`` and what follows it; returns why to stop."""
        step = self.step + 1
        plan = self.cadence.plan(step, epoch_ended=ends_epoch, epoch=self.epoch + ends_epoch)
        check = plan.needs_host or self._skip_nonfinite or step == self._interrupt_at
        try:
            out: StepOutcome | None = self.stepper.run(window, step, check=check, log=plan.log)
        except NonFinite as e:
            out = self._non_finite(e, ends_epoch)  # None: skipped; otherwise it raises
        if out is not None:
            self.step = step
            if bar is not None:
                bar.update(1)
        if ends_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if out is None:
            plan = self.cadence.plan(self.step, stepped=False, epoch_ended=ends_epoch, epoch=self.epoch)
        self._done_position = (self.epoch, self.batch_in_epoch)
        self.train_time = time.perf_counter() - self._start_time

        stop = self._stop_request(plan)
        if stop and not check:
            try:  # about to save after unchecked steps: read their losses first
                self.stepper.resolve()
            except NonFinite as e:
                self._non_finite(e, False)
        if plan.log and out is not None:
            self._log(out, bar)
        if plan.validate or stop == TIME_UP:
            self._validate_and_report(bar)
            if self.tracker.should_stop:
                stop = stop or EARLY
        if plan.done:
            stop = stop or DONE
        if plan.checkpoint or stop:
            self.save("last.pt")
        return stop

    def _stop_request(self, plan: Plan) -> str | None:
        """A signal, ``interrupt_at`` or ``max_time``. Under DDP the signal and the clock
        are read together by all ranks at sync points only (no collective per step)."""
        signalled = self._stop_signal is not None
        time_up = self._max_time is not None and self.train_time >= self._max_time
        if self._interrupt_at is not None and self.step == self._interrupt_at:
            return INTERRUPTED  # the same step on every rank: no collective needed
        if D.is_dist():
            if not plan.needs_host:
                return None
            signalled, time_up = D.all_reduce_flags([signalled, time_up])
            if signalled and self._stop_signal is None:
                self._stop_signal = 0  # another rank was signalled
        if signalled:
            return INTERRUPTED
        return TIME_UP if time_up else None

    def _non_finite(self, e: NonFinite, ends_epoch: bool) -> None:
        """Skip the step (``on_nonfinite=skip``, rolled back) or stop with the last good state."""
        r = e.record
        values = ", ".join(f"{k}={float(v.detach()):.6g}" for k, v in r.losses.items()) \
            if r is not None else "on another process"
        where = f"step {e.step}" + (f" (group '{r.group}')" if r is not None else "")
        if self._skip_nonfinite and e.rolled_back:
            if D.is_main():
                print(f"warning: non-finite loss at {where}: {values}; step skipped", flush=True)
            return
        if e.rolled_back:
            # Every group's weights, optimizer state and schedule are those before the step.
            if ends_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self.save("last.pt")
            kept = f"last good state (step {self.step}) in {self.ckpt_dir / 'last.pt'}"
        elif self._saved_step is not None:
            kept = (f"the steps after it are not saved; last good state (step {self._saved_step}) "
                    f"in {self.ckpt_dir / 'last.pt'}")
        else:
            kept = "no checkpoint was written before it"
        raise TrainingStopped(f"non-finite loss at {where}: {values}; stopped, {kept} "
                              f"(trainer.on_nonfinite=skip drops bad steps instead)")

    def _log(self, out: StepOutcome, bar: Any) -> None:
        now = time.perf_counter()
        vals = out.log_values()
        scal = {f"train/{k}": v for k, v in vals.items()}
        for g, opt in self.optimizers.items():
            scal[f"train/lr/{g}"] = current_lr(opt)
        for g, norm in out.grad_norms.items():
            v = float(norm)
            scal[f"train/grad_norm/{g}"] = v if math.isfinite(v) else float("nan")
        scal["train/samples_per_s"] = self._samples * D.world_size() / max(now - self._t_log, 1e-9)
        self.logger.scalars(scal, self.step)
        self._samples, self._t_log = 0, now
        if bar is not None:
            shown = {k: f"{v:.4g}" for k, v in vals.items() if not k.startswith("log_")}
            bar.set_postfix(shown if len(shown) <= 4 else {"loss": f"{sum(vals.values()):.4g}"})

    @contextlib.contextmanager
    def _progress_bar(self) -> Iterator[Any]:
        bar = None
        if D.is_main() and self.t.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True)
        try:
            yield bar
        finally:
            if bar is not None:
                bar.close()

    def _save_after_crash(self) -> tuple[Path | None, int | None]:
        """Write last.pt of the last completed step, if the weights in memory are that."""
        last = self.ckpt_dir / "last.pt"
        kept = (last if last.is_file() else None), self._saved_step
        stepper = self.stepper
        if stepper is None or stepper.applied:  # a half-applied step: keep the file on disk
            return kept
        if self.sharded and D.is_dist():  # writing shards needs every rank, which may be gone
            return kept
        try:
            stepper.resolve(local=True)
        except NonFinite:
            return kept
        self.epoch, self.batch_in_epoch = self._done_position
        try:
            self.save("last.pt")
        except OSError:  # a full disk, say: the file on disk is still whole (atomic writes)
            return kept
        return last, self.step

    def _finish(self, stop: str | None) -> dict[str, Any]:
        metrics = self.last_metrics
        nums = flat_numbers(metrics)
        interrupted = stop == INTERRUPTED
        summary = {
            **nums,
            "monitor": self.tracker.monitor, "best_value": self.tracker.value,
            "best_step": self.tracker.step,
            "steps": self.step, "epochs": self.epoch, "train_time_s": round(self.train_time, 3),
            "stopped_early": stop == EARLY, "interrupted": interrupted,
            "signal": self._stop_signal if interrupted and self._stop_signal else None,
        }
        for k, v in metrics.items():
            if k not in nums:
                summary[k] = v  # nested tables (per_class, confusion_matrix)
        if D.is_main():
            write_json(self.run_dir / "metrics.json", summary)
            self.logger.close()
            status = "interrupted" if interrupted else ("stopped early" if stop == EARLY else "done")
            print(format_table(metrics, f"validation metrics (step {self.last_val_step}):"))
            best = f"{self.tracker.monitor}={self.tracker.value:.6g} at step {self.tracker.step}" \
                if self.tracker.value is not None else "none"
            print(f"{status}: {self.step} steps in {self.train_time:.1f}s; best {best}; run dir {self.run_dir}")
        else:
            self.logger.close()
        return summary


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _say(bar: Any, msg: str) -> None:
    if bar is not None:
        bar.write(msg)
    else:
        print(msg, flush=True)


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
