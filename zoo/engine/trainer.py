"""The one training loop every model runs through.

The loop knows nothing about particular models: it asks the model for its optimizer
groups and named losses (the contract in ``zoo/models/base.py``), steps one optimizer
per group in order, validates with the model's evaluator, and keeps the run directory
(checkpoints, TensorBoard events, metrics.json, pictures) complete at every moment.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from zoo.engine import checkpoint as C
from zoo.engine import distributed as D
from zoo.engine.config import build
from zoo.engine.ema import ModelEMA
from zoo.errors import UserError
from zoo.engine.evaluation import eval_loader, evaluate
from zoo.engine.logging import RunLogger
from zoo.engine.optim import build_optimizers, build_schedulers, current_lr
from zoo.engine.utils import (amp_dtype, autocast, batch_size_of, flat_numbers, format_table,
                              seed_everything, set_deterministic, to_device, write_json)


class TrainingStopped(Exception):
    """A run that cannot go on (non-finite loss): printed as one line, exit status 1."""


class _StepModule(nn.Module):
    """DDP and torch.compile wrap this: its forward is the model's training_step, so every
    step passes through the wrapped module's forward (DDP's gradient hooks need that)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, group: str) -> dict[str, torch.Tensor]:
        return self.model.training_step(batch, group)


def build_data(cfg: DictConfig) -> Any:
    return build(cfg.data, "data")


def build_model(cfg: DictConfig) -> nn.Module:
    return build(cfg.model, "model")


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: Path, device: torch.device,
                 resume: bool = False) -> None:
        self.cfg, self.run_dir, self.device, self.resume = cfg, Path(run_dir), device, resume
        self.t = cfg.trainer
        self.ckpt_dir = self.run_dir / "checkpoints"
        self._stop_signal = False

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
        self.evaluator = self.model.build_evaluator(self.data.meta)

        if not self.resume:
            if cfg.get("init_from"):
                self._init_from(cfg.init_from)
            self.model.on_train_start(self.data, str(self.run_dir))

        self.groups = self.model.optimizer_groups()
        self.optimizers = build_optimizers(self.groups, cfg.optim, self.device) if self.groups else {}
        self.train_loader = self._train_loader()
        self.accumulate = max(int(t.accumulate or 1), 1)
        self.batches_per_epoch = len(self.train_loader)
        self.steps_per_epoch = max(self.batches_per_epoch // self.accumulate, 1)
        if t.max_steps is not None:
            self.total_steps = int(t.max_steps)
        elif t.max_epochs is not None:
            self.total_steps = int(t.max_epochs) * self.steps_per_epoch
        else:
            raise UserError("set trainer.max_steps or trainer.max_epochs")
        self.val_unit = "step" if t.max_steps is not None else "epoch"
        self.schedulers = build_schedulers(self.optimizers, cfg.sched, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        self.ema = ModelEMA(self.model, float(t.ema)) if t.ema else None

        # Progress counters; all restored on resume.
        self.step = 0          # optimizer steps done
        self.epoch = 0
        self.batch_in_epoch = 0  # micro-batches of the current epoch already consumed
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.bad_validations = 0
        self.monitor = t.monitor
        self.last_metrics: dict[str, Any] = {}
        self.train_time = 0.0
        self.validations = 0
        self.last_val_step: int | None = None
        if self.resume:
            self._load_last()

        wrapped: nn.Module = _StepModule(self.model)
        if D.is_dist():
            from torch.nn.parallel import DistributedDataParallel as DDP

            wrapped = DDP(wrapped, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                          find_unused_parameters=len(self.groups) > 1)
        if t.compile:
            wrapped = torch.compile(wrapped)
        self.wrapped = wrapped
        self.logger = RunLogger(self.run_dir, self.cfg.logger, enabled=D.is_main())

    def _train_loader(self) -> DataLoader:
        ds = self.data.dataset("train")
        n = len(ds)
        if n == 0:
            raise UserError("the training split is empty")
        self.sampler = D.EpochSampler(n, shuffle=bool(getattr(self.data, "shuffle", True)),
                                      seed=int(self.cfg.seed), rank=D.rank(), world=D.world_size())
        per_rank = len(self.sampler)
        bs = self.data.batch_size
        # A separate generator: creating a loader iterator must not draw from the global RNG,
        # or a run resumed mid-epoch would diverge from one never stopped.
        gen = torch.Generator().manual_seed(int(self.cfg.seed))
        return DataLoader(ds, batch_size=bs, sampler=self.sampler, num_workers=self.data.num_workers,
                          collate_fn=self.data.collate_fn, pin_memory=self.device.type == "cuda",
                          drop_last=per_rank > bs, generator=gen,
                          persistent_workers=False)

    def _init_from(self, path: str) -> None:
        lines = C.init_weights(self.model, path)
        if D.is_main():
            print("\n".join(lines))

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "format": C.FORMAT_VERSION,
            "model": self.model.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.state_dict() if self.ema else None,
            # state a model carries between steps outside its weights (e.g. an RNN language
            # model's hidden state under truncated BPTT): optional hook, see docs/architecture.md
            "model_state": (self.model.training_state()
                            if hasattr(self.model, "training_state") else None),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "best": {"monitor": self.monitor, "value": self.best_value, "step": self.best_step,
                     "bad_validations": self.bad_validations},
            "last_metrics": flat_numbers(self.last_metrics),
            "train_time": self.train_time, "validations": self.validations,
            "last_val_step": self.last_val_step,
            "rng": C.rng_state(),
        }

    def save(self, name: str, state: dict[str, Any] | None = None) -> None:
        if D.is_main():
            C.save_atomic(state if state is not None else self.state(), self.ckpt_dir / name)

    def _load_last(self) -> None:
        ckpt = C.load(self.ckpt_dir / "last.pt")
        C.load_model_state(self.model, ckpt["model"], self.ckpt_dir / "last.pt")
        missing = set(self.optimizers) ^ set(ckpt["optimizers"])
        if missing:
            raise UserError(f"cannot resume: the checkpoint's optimizer groups "
                            f"{sorted(ckpt['optimizers'])} differ from the model's {sorted(self.optimizers)}")
        for k, opt in self.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        if self.scaler and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        if hasattr(self.model, "load_training_state"):
            self.model.load_training_state(ckpt.get("model_state"))
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        b = ckpt["best"]
        self.monitor, self.best_value, self.best_step = b["monitor"], b["value"], b["step"]
        self.bad_validations = b["bad_validations"]
        self.last_metrics = dict(ckpt.get("last_metrics") or {})
        self.train_time = float(ckpt.get("train_time", 0.0))
        self.validations = int(ckpt.get("validations", 0))
        self.last_val_step = ckpt.get("last_val_step")
        C.set_rng_state(ckpt["rng"])

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, Any]:
        loader = eval_loader(self.data, "val", self.device)
        images_every = int(self.cfg.logger.get("images_every", 0) or 0)
        want_images = D.is_main() and images_every > 0 and self.validations % images_every == 0

        def pictures(batch: Any, preds: Any) -> None:
            if want_images:
                imgs = self.model.log_images(batch, preds)
                self.logger.images(imgs, self.step)

        ctx = self.ema.swapped(self.model) if self.ema else _null()
        with ctx:
            metrics = evaluate(self.model, loader, self.evaluator, self.device, self.amp,
                               limit_batches=self.t.limit_val_batches, on_first_batch=pictures)
        self.validations += 1
        self.last_val_step = self.step
        nums = flat_numbers(metrics)
        if self.monitor is None:
            if not nums:
                raise UserError("the evaluator returned no numeric metric to monitor")
            self.monitor = next(iter(nums))
        if self.monitor not in nums:
            raise UserError(f"trainer.monitor '{self.monitor}' is not a validation metric; "
                            f"valid choices: {', '.join(nums)}")
        self.last_metrics = metrics
        self.logger.scalars({f"val/{k}": v for k, v in nums.items()}, self.step)
        value = nums[self.monitor]
        better = self.best_value is None or (
            value > self.best_value if self.t.mode == "max" else value < self.best_value)
        if not math.isfinite(value):
            better = False
        if better:
            self.best_value, self.best_step, self.bad_validations = value, self.step, 0
            state = self.state()
            if self.ema:  # best.pt holds the weights that were validated
                state["model"] = {k: v.clone() for k, v in self.ema.shadow.items()}
            self.save("best.pt", state)
        else:
            self.bad_validations += 1
        return metrics

    # ------------------------------------------------------------------ training
    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGINT/SIGTERM ask for a clean stop; returns the handlers they replaced."""
        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal:  # second signal: stop now
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
        """Train to ``max_steps`` (or a stop), validate, save; returns the final summary.

        The stop-signal handlers live only while fitting: left installed they would keep
        this trainer (and its process group, under DDP) alive and swallow a later Ctrl-C.
        """
        self.setup()
        previous = self._install_signal_handlers()
        try:
            return self._fit()
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)

    def _fit(self) -> dict[str, Any]:
        t = self.t
        ckpt_every = int(t.ckpt_every or 0)
        val_every = int(t.val_every or 0)
        log_every = max(int(t.log_every or 1), 1)
        stopped_early = False
        interrupted = False

        if not self.optimizers:
            # Closed-form models: nothing to step. Validate and save once.
            self.step = self.total_steps = 0
            metrics = self.validate()
            self.save("last.pt")
            return self._finish(metrics, stopped_early, interrupted)

        bar = None
        if D.is_main() and t.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True)
        self.model.train()
        window: list[Any] = []
        samples_since_log, t_log = 0, time.perf_counter()
        start_time = time.perf_counter() - self.train_time
        max_time = float(t.max_time) if t.max_time else None
        last_val_step = -1
        try:
            while self.step < self.total_steps and not stopped_early:
                self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * self.data.batch_size)
                for batch in self.train_loader:
                    self.batch_in_epoch += 1
                    window.append(to_device(batch, self.device, non_blocking=self.device.type == "cuda"))
                    samples_since_log += batch_size_of(batch) * D.world_size()
                    if len(window) < self.accumulate:
                        continue
                    losses = self._optimizer_step(window)
                    window = []
                    if losses is None:  # a skipped non-finite step
                        continue
                    self.step += 1
                    if bar is not None:
                        bar.update(1)
                    if self.step % log_every == 0 or self.step == self.total_steps:
                        now = time.perf_counter()
                        vals = {k: float(v) for k, v in losses.items()}
                        scal = {f"train/{k}": v for k, v in vals.items()}
                        for g, opt in self.optimizers.items():
                            scal[f"train/lr/{g}"] = current_lr(opt)
                        scal.update({f"train/grad_norm/{g}": v for g, v in self._grad_norms.items()})
                        scal["train/samples_per_s"] = samples_since_log / max(now - t_log, 1e-9)
                        self.logger.scalars(scal, self.step)
                        samples_since_log, t_log = 0, now
                        if bar is not None:
                            shown = {k: f"{v:.4g}" for k, v in vals.items() if not k.startswith("log_")}
                            bar.set_postfix(shown if len(shown) <= 4 else {"loss": f"{sum(vals.values()):.4g}"})
                    self.train_time = time.perf_counter() - start_time
                    time_up = max_time is not None and self.train_time >= max_time
                    done = self.step >= self.total_steps
                    validate_now = self.val_unit == "step" and val_every and self.step % val_every == 0
                    if validate_now or (done and self.val_unit == "step") or time_up:
                        self._validate_and_report(bar)
                        last_val_step = self.step
                        if t.patience is not None and self.bad_validations > int(t.patience):
                            stopped_early = True
                    interrupt = t.interrupt_at is not None and self.step == int(t.interrupt_at)
                    stop_now = D.all_reduce_flag(self._stop_signal) or interrupt or time_up
                    if (ckpt_every and self.step % ckpt_every == 0) or stop_now or stopped_early:
                        self.save("last.pt")
                    if stop_now:
                        interrupted = not time_up
                        raise _Stop
                    if done or stopped_early:
                        if self.batch_in_epoch >= self.batches_per_epoch:
                            self.epoch += 1  # the last step ended the epoch too
                            self.batch_in_epoch = 0
                        break
                else:
                    # epoch finished (leftover accumulation micro-batches are dropped)
                    window = []
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    epoch_val = (val_every or 1) if self.val_unit == "epoch" else (0 if val_every else 1)
                    if epoch_val and (self.epoch % epoch_val == 0 or self.step >= self.total_steps):
                        self._validate_and_report(bar)
                        last_val_step = self.step
                        if t.patience is not None and self.bad_validations > int(t.patience):
                            stopped_early = True
                    if ckpt_every or stopped_early:
                        self.save("last.pt")
                    continue
                break
        except _Stop:
            pass
        finally:
            if bar is not None:
                bar.close()
        if not interrupted and last_val_step != self.step:
            self._validate_and_report(None)
        if not interrupted:
            self.save("last.pt")
        return self._finish(self.last_metrics, stopped_early, interrupted)

    def _validate_and_report(self, bar: Any) -> None:
        metrics = self.validate()
        if D.is_main():
            nums = flat_numbers(metrics)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in list(nums.items())[:6])
            msg = f"step {self.step} epoch {self.epoch}: {shown}"
            if bar is not None:
                bar.write(msg)
            else:
                print(msg, flush=True)

    def _optimizer_step(self, window: list[Any]) -> dict[str, torch.Tensor] | None:
        """One optimizer step per group over the accumulation window. Returns the losses
        (detached) of the step, or None when a non-finite step was skipped."""
        logged: dict[str, torch.Tensor] = {}
        self._grad_norms: dict[str, float] = {}
        n = len(window)
        for group, opt in self.optimizers.items():
            params = self.groups[group]
            # Clear every parameter's gradient, not only this group's: another group's
            # backward (a generator loss through the discriminator) leaves gradients behind.
            self.model.zero_grad(set_to_none=True)
            for i, mb in enumerate(window):
                sync = _no_sync(self.wrapped) if (D.is_dist() and i < n - 1) else _null()
                with sync:
                    with autocast(self.device, self.amp):
                        losses = self.wrapped(mb, group)
                    trainable = [v for k, v in losses.items() if not k.startswith("log_")]
                    if not trainable:
                        raise UserError(f"training_step returned no loss for group '{group}'")
                    total = sum(trainable)
                    bad = D.all_reduce_flag(not bool(torch.isfinite(total.detach())))
                    if bad:
                        return self._non_finite(group, losses)
                    loss = total / n
                    if self.scaler is not None:
                        self.scaler.scale(loss).backward()
                    else:
                        loss.backward()
                for k, v in losses.items():
                    logged[k] = logged.get(k, 0) + v.detach().float() / n
            if self.scaler is not None:
                self.scaler.unscale_(opt)
            clip = self.t.clip_grad_norm
            norm = torch.nn.utils.clip_grad_norm_(params, float(clip) if clip else float("inf"))
            self._grad_norms[group] = float(norm) if torch.isfinite(norm) else float("nan")
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
            hook = getattr(self.model, "on_after_step", None)
            if hook is not None:  # with the rate of the step just taken (a proximal step needs it)
                hook(group, current_lr(opt))
            self.schedulers[group].step()
        if self.scaler is not None:
            self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        return logged

    def _non_finite(self, group: str, losses: dict[str, torch.Tensor]) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        values = ", ".join(f"{k}={float(v.detach()):.6g}" for k, v in losses.items())
        where = f"step {self.step + 1} (group '{group}')"
        if self.t.on_nonfinite == "skip":
            if D.is_main():
                print(f"warning: non-finite loss at {where}: {values}; step skipped", flush=True)
            return None
        # The weights are still those of the last good step: keep them in last.pt.
        self.save("last.pt")
        raise TrainingStopped(f"non-finite loss at {where}: {values}; stopped, "
                              f"last good state in {self.ckpt_dir / 'last.pt'} "
                              f"(trainer.on_nonfinite=skip drops bad steps instead)")

    def _finish(self, metrics: dict[str, Any], stopped_early: bool, interrupted: bool) -> dict[str, Any]:
        nums = flat_numbers(metrics)
        summary = {
            **nums,
            "monitor": self.monitor, "best_value": self.best_value, "best_step": self.best_step,
            "steps": self.step, "epochs": self.epoch, "train_time_s": round(self.train_time, 3),
            "stopped_early": stopped_early, "interrupted": interrupted,
            "signal": int(self._stop_signal) if interrupted and self._stop_signal else None,
        }
        for k, v in metrics.items():
            if k not in nums:
                summary[k] = v  # nested tables (per_class, confusion_matrix)
        if D.is_main():
            write_json(self.run_dir / "metrics.json", summary)
            self.logger.close()
            status = "interrupted" if interrupted else ("stopped early" if stopped_early else "done")
            print(format_table(metrics, f"validation metrics (step {self.last_val_step}):"))
            best = f"{self.monitor}={self.best_value:.6g} at step {self.best_step}" \
                if self.best_value is not None else "none"
            print(f"{status}: {self.step} steps in {self.train_time:.1f}s; best {best}; run dir {self.run_dir}")
        else:
            self.logger.close()
        return summary


class _Stop(Exception):
    pass


def _null():
    import contextlib

    return contextlib.nullcontext()


def _no_sync(wrapped: nn.Module):
    inner = getattr(wrapped, "_orig_mod", wrapped)
    return inner.no_sync() if hasattr(inner, "no_sync") else _null()


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
