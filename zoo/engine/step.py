"""One training step: the grouped strategy (default) and the manual one.

**Grouped** (``ZooModel.step_strategy = "grouped"``): for each optimizer group in
order, clear every gradient, run ``training_step(batch, group)`` and backpropagate the
sum of its losses on each micro-batch of the accumulation window (DDP's ``no_sync`` on
all but the last), unscale (fp16), clip, step, ``on_after_step``.

**Manual** (``step_strategy = "manual"``): the engine calls
``training_step(batch, handle)`` once per training step and the model drives its own
backward passes and optimizer steps through ``handle`` (a ``StepHandle``)::

    def training_step(self, batch, handle):
        for _ in range(self.d_steps):                       # 2:1 discriminator:generator
            for mb in handle.micro_batches():               # no_sync but on the last
                handle.backward(handle.forward(self.d_loss, mb), "discriminator")
            handle.step("discriminator")
        for mb in handle.micro_batches():
            handle.backward(handle.forward(self.g_loss, mb), "generator")
        handle.step("generator")
        handle.log("d_real", ...)

``batch`` is the first micro-batch (the whole batch when ``trainer.accumulate=1``).
``handle.forward(fn, *args)`` runs ``fn`` through the DDP/compile wrapper under
autocast (DDP needs every forward to pass through it); ``handle.backward(loss, group)``
scales by AMP and by 1/accumulate; ``handle.step(group)`` unscales, clips, measures the
gradient norm when a log or the clip needs it, steps, calls ``on_after_step`` and
clears every gradient (each step starts from none, as the training step does). A
model with no optimizer groups (a bandit's counters in buffers) just updates its
buffers and calls ``handle.log``. Schedulers advance once per training step for each
group that stepped; EMA updates once per training step.

**Non-finite losses, without a host sync per step.** Every loss that is backpropagated
is kept (a device scalar) until the trainer next needs a value on the host: a log step,
a validation, a checkpoint, a stop or the end (``Plan.needs_host``). Steps that are such
sync points ("checked" steps) read every pending loss back once, before each optimizer
update. With ``on_nonfinite=skip`` every step is checked. When a checked step finds a
non-finite loss of its own, it is rolled back exactly: the groups that had already
stepped get their weights and optimizer states back, every buffer is restored, no
scheduler has moved (they step at the end of a training step), and the weights are
those of the step before. When the non-finite loss belongs to an earlier, unchecked
step (``on_nonfinite=stop`` between sync points) the weights in memory are already
spoiled: the trainer stops without writing anything, and ``last.pt`` is the state of
the last sync point that passed (at most ``log_every`` / ``ckpt_every`` steps before).
Either way no checkpoint is ever written with a non-finite step in it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zoo.engine import distributed as D
from zoo.engine.utils import autocast
from zoo.errors import UserError


@dataclass
class LossRecord:
    """One backpropagated loss: its step (1-based), group and named parts."""

    step: int
    group: str
    losses: dict[str, torch.Tensor]
    total: torch.Tensor


class NonFinite(Exception):
    """A non-finite loss was found. ``rolled_back``: the state is that of the step before
    ``record.step`` (a checked step); otherwise later steps already ran on spoiled weights.
    ``record`` is None when the loss was on another process."""

    def __init__(self, record: LossRecord | None, rolled_back: bool, step: int) -> None:
        super().__init__("non-finite loss")
        self.record, self.rolled_back, self.step = record, rolled_back, step


@dataclass
class StepOutcome:
    records: list[LossRecord]                              # this step's losses
    logs: dict[str, list[torch.Tensor | float]] = field(default_factory=dict)  # handle.log
    grad_norms: dict[str, torch.Tensor] = field(default_factory=dict)

    def log_values(self) -> dict[str, float]:
        """Mean of each named loss (and handle.log value) over the step: host values."""
        sums: dict[str, list] = {}
        for r in self.records:
            for k, v in r.losses.items():
                sums.setdefault(k, []).append(v)
        for k, vs in self.logs.items():
            sums.setdefault(k, []).extend(vs)
        out = {}
        for k, vs in sums.items():
            ts = [v.detach().float().reshape(()) if isinstance(v, torch.Tensor)
                  else torch.tensor(float(v)) for v in vs]
            out[k] = float(torch.stack([t.cpu() for t in ts]).mean()) if len(ts) > 1 else float(ts[0])
        return out


class _Snapshot:
    """What a checked step may have to undo: buffers, and each group's weights and
    optimizer state captured before that group's first update in this step."""

    def __init__(self, model: nn.Module) -> None:
        self.buffers = [(b, b.detach().clone()) for b in model.buffers()]
        self.groups: dict[str, list[tuple[nn.Parameter, torch.Tensor, dict | None]]] = {}

    def capture(self, group: str, params: list[nn.Parameter], opt: torch.optim.Optimizer) -> None:
        if group in self.groups:
            return
        saved = []
        for p in params:
            st = opt.state.get(p)
            st = None if st is None else {k: (v.clone() if isinstance(v, torch.Tensor) else v)
                                          for k, v in st.items()}
            saved.append((p, p.detach().clone(), st))
        self.groups[group] = saved

    @torch.no_grad()
    def restore(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        for group, saved in self.groups.items():
            opt = optimizers[group]
            for p, value, st in saved:
                p.copy_(value)
                if st is None:
                    opt.state.pop(p, None)
                else:
                    opt.state[p] = st
        for b, value in self.buffers:
            b.copy_(value)


class Stepper:
    """Runs training steps with one strategy; owns the pending losses and their check."""

    def __init__(self, *, model: nn.Module, wrapped: nn.Module | None,
                 groups: dict[str, list[nn.Parameter]], optimizers: dict[str, torch.optim.Optimizer],
                 schedulers: dict[str, Any], scaler: torch.amp.GradScaler | None,
                 clip: float | None, device: torch.device, amp: torch.dtype | None,
                 ema: Any = None) -> None:
        self.model, self.groups, self.optimizers, self.schedulers = model, groups, optimizers, schedulers
        self.scaler, self.clip, self.device, self.amp, self.ema = scaler, clip, device, amp, ema
        self.manual = model.step_strategy == "manual"
        if model.step_strategy not in ("grouped", "manual"):
            raise UserError(f"{type(model).__name__}.step_strategy must be 'grouped' or 'manual', "
                            f"got '{model.step_strategy}'")
        # Without DDP or compile the wrapper would only add a Module.__call__ per forward.
        self._wrapped = wrapped
        self.distributed = D.is_dist()
        self.zero_all = len(optimizers) > 1
        self.pending: list[LossRecord] = []
        self.applied = False  # True once this step has changed any weight (crash handling)

    # ---------------------------------------------------------------- the check
    def resolve(self, local: bool = False) -> None:
        """Read every pending loss back (one sync; under DDP one all-reduce, so that all
        ranks decide together, unless ``local``: after a crash, when the other ranks may
        not be there). Raises NonFinite(rolled_back=False) if one is bad."""
        pending, self.pending = self.pending, []
        distributed = self.distributed and not local
        if not pending and not distributed:
            return
        first = self._first_bad(pending)
        bad_step = first.step if first is not None else None
        if distributed:  # the earliest bad step over all ranks
            bad_step = D.all_reduce_min(bad_step)
        if bad_step is not None:
            raise NonFinite(first if first is not None and first.step == bad_step else None,
                            rolled_back=False, step=bad_step)

    @staticmethod
    def _first_bad(records: list[LossRecord]) -> LossRecord | None:
        if not records:
            return None
        totals = torch.stack([r.total.float().reshape(()) for r in records])
        finite = torch.isfinite(totals)
        if bool(finite.all()):
            return None
        return records[int((~finite).nonzero()[0, 0])]

    # ---------------------------------------------------------------- a step
    def run(self, window: list[Any], step: int, *, check: bool, log: bool) -> StepOutcome:
        """Training step number ``step`` (1-based) over the micro-batches ``window``.

        ``check``: a sync point (see the module docstring); ``log``: the gradient norms
        are wanted. Raises NonFinite when a check finds a non-finite loss.
        """
        self.applied = False
        handle = StepHandle(self, window, step, check=check, log=log)
        try:
            if self.manual:
                self.model.zero_grad(set_to_none=True)
                extra = self.model.training_step(window[0], handle)
                if extra:
                    for k, v in extra.items():
                        handle.log(k, v)
            else:
                self._grouped(handle)
            handle._finish()
            self.applied = False  # a completed step
        except NonFinite as e:
            handle._roll_back()
            e.rolled_back = e.step == step  # else earlier, unchecked steps spoiled the weights
            raise
        return handle.outcome

    def _grouped(self, h: StepHandle) -> None:
        n = len(h.window)
        for group, opt in self.optimizers.items():
            # Clear every parameter's gradient, not only this group's: another group's
            # backward (a generator loss through the discriminator) leaves gradients behind.
            if self.zero_all:
                self.model.zero_grad(set_to_none=True)
            else:
                opt.zero_grad(set_to_none=True)
            for i, mb in enumerate(h.window):
                if self.distributed:
                    with h._accumulating(i < n - 1):
                        h._backward_losses(h.forward(self.model.training_step, mb, group), group)
                else:
                    h._backward_losses(h.forward(self.model.training_step, mb, group), group)
            h.step(group)

    def forward(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        if self._wrapped is None:
            return fn(*args, **kwargs)
        return self._wrapped(fn, *args, **kwargs)

    def no_sync(self) -> contextlib.AbstractContextManager:
        return _no_sync(self._wrapped) if self.distributed else contextlib.nullcontext()


class StepHandle:
    """What a manual ``training_step`` drives a step with (see the module docstring)."""

    def __init__(self, stepper: Stepper, window: list[Any], step: int, *, check: bool,
                 log: bool) -> None:
        self._s = stepper
        self.window = window
        self.step_index = step
        self.check, self.wants_log = check, log
        self.accumulate = len(window)
        self.outcome = StepOutcome(records=[])
        self.snapshot: _Snapshot | None = _Snapshot(stepper.model) if check else None
        self._stepped: list[str] = []
        self._scale = 1.0 / len(window)
        self._unscaled = False

    # ------------------------------------------------------------ for models
    def micro_batches(self) -> Iterator[Any]:
        """Each micro-batch of the window; DDP's ``no_sync`` on all but the last, and
        ``backward`` scales each loss by 1/accumulate."""
        n = len(self.window)
        for i, mb in enumerate(self.window):
            with self._accumulating(i < n - 1):
                yield mb

    def forward(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` through the DDP/compile wrapper, under autocast."""
        with autocast(self._s.device, self._s.amp):
            return self._s.forward(fn, *args, **kwargs)

    def backward(self, loss: torch.Tensor | dict[str, torch.Tensor], group: str) -> None:
        """Backpropagate ``loss`` (a tensor, or named losses whose non-``log_`` parts are
        summed) for ``group``; kept for the non-finite check and the log."""
        if isinstance(loss, torch.Tensor):
            loss = {f"loss_{group}": loss}
        self._backward_losses(loss, group)

    def step(self, group: str) -> None:
        """Unscale, clip, step ``group``'s optimizer and call ``on_after_step``."""
        s = self._s
        opt = s.optimizers.get(group)
        if opt is None:
            raise UserError(f"handle.step('{group}'): the model has no optimizer group '{group}'; "
                            f"its groups: {', '.join(s.optimizers) or 'none'}")
        if self.check:
            self._check()
            if self.snapshot is not None and (s.manual or group != next(reversed(s.optimizers))):
                self.snapshot.capture(group, s.groups[group], opt)
        if s.scaler is not None:
            s.scaler.unscale_(opt)
            self._unscaled = True
        if s.clip or self.wants_log:
            params = s.groups[group]
            if s.clip:
                norm = torch.nn.utils.clip_grad_norm_(params, float(s.clip))
            else:
                grads = [p.grad for p in params if p.grad is not None]
                norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
            self.outcome.grad_norms[group] = norm.detach()
        s.applied = True
        if s.scaler is not None:
            s.scaler.step(opt)
            if s.manual:  # a group may step again in this training step
                s.scaler.update()
                self._unscaled = False
        else:
            opt.step()
        # with the rate of the step just taken (a proximal step needs it)
        s.model.on_after_step(group, opt.param_groups[0]["lr"])
        if s.manual:  # the next backward, of any group, starts from clean gradients
            s.model.zero_grad(set_to_none=True)
        if group not in self._stepped:
            self._stepped.append(group)

    def zero_grad(self, group: str | None = None) -> None:
        """Clear the gradients of ``group`` (None: of every parameter)."""
        if group is None:
            self._s.model.zero_grad(set_to_none=True)
        else:
            self._s.optimizers[group].zero_grad(set_to_none=True)

    def log(self, name: str, value: torch.Tensor | float) -> None:
        """A value logged as ``train/<name>`` at log steps (the step's mean)."""
        self.outcome.logs.setdefault(name, []).append(
            value.detach() if isinstance(value, torch.Tensor) else value)

    # ------------------------------------------------------------ internals
    @contextlib.contextmanager
    def _accumulating(self, more_to_come: bool) -> Iterator[None]:
        if more_to_come and self._s.distributed:
            with self._s.no_sync():
                yield
        else:
            yield

    def _backward_losses(self, losses: dict[str, torch.Tensor], group: str) -> None:
        total = None
        for k, v in losses.items():
            if not k.startswith("log_"):
                total = v if total is None else total + v
        if total is None:
            raise UserError(f"training_step returned no loss for group '{group}'")
        loss = total * self._scale if self._scale != 1.0 else total
        if self._s.scaler is not None:
            self._s.scaler.scale(loss).backward()
        else:
            loss.backward()
        # detached: a record lives until the next sync point and must not hold a graph
        record = LossRecord(self.step_index, group, {k: v.detach() for k, v in losses.items()},
                            total.detach())
        self._s.pending.append(record)
        self.outcome.records.append(record)

    def _check(self) -> None:
        self._s.resolve()

    def _roll_back(self) -> None:
        s = self._s
        if self.snapshot is not None:
            self.snapshot.restore(s.optimizers)
        for opt in s.optimizers.values():
            opt.zero_grad(set_to_none=True)
        if s.scaler is not None and self._unscaled:
            s.scaler.update()  # clears the per-step unscale state (the loss scale may move)
        s.pending = []
        s.applied = False

    def _finish(self) -> None:
        s = self._s
        if self.check and not self._stepped:
            self._check()  # a model without optimizers: still no spoiled state saved
        for group in self._stepped:
            s.schedulers[group].step()
        if s.scaler is not None and not s.manual and self._stepped:
            s.scaler.update()
        if s.ema is not None:
            s.ema.update()


class StepModule(nn.Module):
    """What DDP and torch.compile wrap: its forward runs a function of the model (its
    ``training_step``, or a manual model's loss), so every forward passes through the
    wrapper (DDP's gradient hooks need that)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


def _no_sync(wrapped: nn.Module | None) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` of the wrapper, looking through a torch.compile wrapper."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from torch.distributed.fsdp import FSDPModule

    inner = wrapped
    if isinstance(inner, torch._dynamo.eval_frame.OptimizedModule):
        inner = inner._orig_mod
    if isinstance(inner, FSDPModule):  # FSDP2: keep unsharded gradients, reduce-scatter once
        return _fsdp_no_sync(inner)
    return inner.no_sync() if isinstance(inner, DDP) else contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(module: Any) -> Iterator[None]:
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)
