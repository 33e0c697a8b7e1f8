"""Test-only models for the step strategies: a GAN on 2-D Gaussians (a 2:1
discriminator:generator ratio, or CycleGAN's order reusing the generated points), and
a 3-armed epsilon-greedy bandit with no optimizer at all. Plus a helper that runs the
real Trainer in-process on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from zoo.data.base import DataModule
from zoo.models.base import ZooModel


class Gaussians2D(DataModule):
    """Points from a mixture of four 2-D Gaussians; targets are zeros."""

    def __init__(self, *, n: int = 128, seed: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        g = torch.Generator().manual_seed(seed)
        centres = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
        x = centres[torch.randint(0, 4, (n,), generator=g)] + 0.2 * torch.randn(n, 2, generator=g)
        self._x = x

    def build(self, split: str) -> Dataset:
        x = self._x if split == "train" else self._x[:32]
        return TensorDataset(x, torch.zeros(len(x)))


class Rounds(DataModule):
    """One item per bandit round (the data carries nothing; the bandit draws rewards)."""

    def __init__(self, *, n: int = 64, **kw: Any) -> None:
        super().__init__(**kw)
        self.n = n

    def build(self, split: str) -> Dataset:
        n = self.n if split == "train" else 4
        return TensorDataset(torch.arange(n, dtype=torch.float32), torch.zeros(n))


class TinyGAN(ZooModel):
    """Generator noise (B, 2) -> points (B, 2); discriminator points -> logit.

    ``order="ratio"``: ``d_steps`` discriminator steps, then one generator step, each on
    freshly generated points. ``order="reuse"`` (CycleGAN's): one generator step whose
    generated points the discriminator step then reuses (detached): the generator runs
    once per training step. ``nan_in`` makes that group's loss NaN on the given step.
    """

    task = "regression"  # validation scores generated points against the data's
    step_strategy = "manual"

    def __init__(self, *, order: str = "ratio", d_steps: int = 2, dropout: float = 0.2,
                 nan_in: str | None = None, nan_at: int | None = None) -> None:
        super().__init__()
        self.G = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
        self.D = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 1))
        self.order, self.d_steps, self.nan_in, self.nan_at = order, d_steps, nan_in, nan_at
        self.calls = {"G": 0, "D": 0}
        self.steps_seen = 0

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"discriminator": list(self.D.parameters()), "generator": list(self.G.parameters())}

    def ema_module(self) -> nn.Module:
        return self.G

    def generate(self, n: int) -> torch.Tensor:
        self.calls["G"] += 1
        return self.G(torch.randn(n, 2))

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        self.calls["D"] += 1
        lr, lf = self.D(real), self.D(fake)
        loss = (F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))
                + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf)))
        return self._maybe_nan(loss, "discriminator")

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        lf = self.D(fake)
        return self._maybe_nan(F.binary_cross_entropy_with_logits(lf, torch.ones_like(lf)), "generator")

    def _maybe_nan(self, loss: torch.Tensor, group: str) -> torch.Tensor:
        if self.nan_in == group and self.steps_seen == self.nan_at:
            return loss * float("nan")
        return loss

    def training_step(self, batch: Any, handle: Any) -> dict[str, torch.Tensor]:
        self.steps_seen += 1
        if self.order == "ratio":
            for _ in range(self.d_steps):
                for real, _y in handle.micro_batches():
                    with torch.no_grad():
                        fake = self.generate(len(real))
                    handle.backward(handle.forward(self.d_loss, real, fake), "discriminator")
                handle.step("discriminator")
            for real, _y in handle.micro_batches():
                handle.backward(handle.forward(lambda n: self.g_loss(self.generate(n)), len(real)),
                                "generator")
            handle.step("generator")
        else:  # CycleGAN's order: the generated points of the generator step are reused
            fakes = []
            for real, _y in handle.micro_batches():
                fake = handle.forward(self.generate, len(real))
                fakes.append(fake)
                handle.backward(handle.forward(self.g_loss, fake), "generator")
            handle.step("generator")
            for (real, _y), fake in zip(handle.micro_batches(), fakes):
                handle.backward(handle.forward(self.d_loss, real, fake.detach()), "discriminator")
            handle.step("discriminator")
        return {"log_g_calls": torch.tensor(float(self.calls["G"]))}

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self.D(batch[0]).squeeze(-1)



class EpsilonGreedyBandit(ZooModel):
    """A 3-armed bandit learner: epsilon-greedy over incremental mean rewards. No
    gradients: counts and values are buffers, the rewards come from the global RNG."""

    task = "regression"
    step_strategy = "manual"

    def __init__(self, *, epsilon: float = 0.2, means: tuple[float, ...] = (0.1, 0.5, 0.9)) -> None:
        super().__init__()
        self.epsilon = float(epsilon)
        self.register_buffer("means", torch.tensor(means))
        self.register_buffer("counts", torch.zeros(len(means)))
        self.register_buffer("values", torch.zeros(len(means)))

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {}

    @torch.no_grad()
    def training_step(self, batch: Any, handle: Any) -> None:
        if float(torch.rand(())) < self.epsilon:
            arm = int(torch.randint(0, len(self.means), ()))
        else:
            arm = int(self.values.argmax())
        reward = self.means[arm] + 0.1 * torch.randn(())
        self.counts[arm] += 1
        self.values[arm] += (reward - self.values[arm]) / self.counts[arm]
        handle.log("reward", reward)
        handle.log("regret", self.means.max() - self.means[arm])

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self.values.max().expand(len(batch[0]))



def compose_cfg(config_dir: Path, *overrides: str) -> Any:
    """A resolved train config (model two_group by default; the model and data are
    replaced by the factories given to ``fit``)."""
    from zoo.engine.config import compose

    cfg = compose(config_dir, "train", ["model=two_group", "logger=none", "trainer.progress=false",
                                        *overrides])
    del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg


def fit(cfg: Any, run_dir: Path, model_fn: Callable[[], nn.Module],
        data_fn: Callable[[], DataModule] | None = None, resume: bool = False,
        monkeypatch: Any = None, device: str = "cpu") -> dict[str, Any]:
    """Run the real Trainer in-process with the given model (and data) factories."""
    from zoo.engine import trainer as T

    monkeypatch.setattr(T, "build_model", lambda c: model_fn())
    if data_fn is not None:
        monkeypatch.setattr(T, "build_data", lambda c: data_fn())
    run_dir.mkdir(parents=True, exist_ok=True)
    return T.Trainer(cfg, run_dir, torch.device(device), resume=resume).fit()


def load(run: Path, name: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / name, weights_only=True)


def states_equal(a: Any, b: Any) -> bool:
    """Exact equality of nested state (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and \
            bool(torch.equal(a, b) or (torch.isnan(a) & torch.isnan(b) | (a == b)).all())
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(states_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b))
    return a == b
