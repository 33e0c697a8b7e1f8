"""Action-value and gradient bandits on the k-armed testbed, vectorised over its runs.

Sutton & Barto, Reinforcement Learning (2nd ed., 2018), chapter 2: greedy and
epsilon-greedy selection over sample-average (or constant step-size) action values,
optimistic initial values, upper-confidence-bound selection, and the gradient bandit
with and without a reward baseline. Every learner holds one independent problem per
testbed run: its state is a (runs, arms) tensor in buffers, one training step of the
trainer is one time step of all runs at once, and the rewards come from the data (the
testbed's true values and that step's noise), so nothing here needs an optimizer.

Each learner records, per time step, the reward summed over runs and how many runs
chose an optimal arm; ``predict`` returns those records for the steps of a batch, and
the bandit task's evaluator turns them into the average-reward and %-optimal curves.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.data.rl import RoundBatch
from zoo.errors import UserError
from zoo.models.base import ZooModel


def argmax_random_ties(values: torch.Tensor) -> torch.Tensor:
    """(runs, arms) -> (runs,) index of a maximum, uniformly among equal maxima."""
    ties = values == values.max(1, keepdim=True).values
    # drawn on the CPU generator: the same choices on every device
    return (torch.rand(values.shape, dtype=torch.float64).to(values.device) * ties).argmax(1)


class Bandit(ZooModel):
    """Base: the records, the reward of a choice, and the round loop. Subclasses
    implement ``select(t) -> (runs,) arms`` and ``learn(arms, rewards)`` for step t (1-based)."""

    task = "bandit"
    step_strategy = "manual"

    def __init__(self, *, runs: int, arms: int, steps: int) -> None:
        super().__init__()
        self.runs, self.arms, self.steps = int(runs), int(arms), int(steps)
        self.register_buffer("true_values", torch.zeros(self.runs, self.arms, dtype=torch.float64))
        self.register_buffer("t", torch.zeros((), dtype=torch.int64))           # steps taken
        self.register_buffer("reward_sum", torch.zeros(self.steps, dtype=torch.float64))
        self.register_buffer("optimal_count", torch.zeros(self.steps, dtype=torch.int64))

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        return {}

    def label(self) -> str:
        """The method and its settings, as the legend of the curves names it."""
        return type(self).__name__

    def on_train_start(self, data: Any, run_dir: str | None = None) -> None:
        q = getattr(data, "true_values", None)
        if q is None or tuple(q.shape) != (self.runs, self.arms):
            raise UserError(f"{type(self).__name__} needs a bandit testbed with "
                            f"runs={self.runs} and arms={self.arms} (data=ten_armed)")
        self.true_values.copy_(q)

    # -- the algorithm ---------------------------------------------------------------------
    def select(self, t: int) -> torch.Tensor:
        raise NotImplementedError

    def learn(self, arms: torch.Tensor, rewards: torch.Tensor) -> None:
        raise NotImplementedError

    # -- one time step of every run ----------------------------------------------------------
    @torch.no_grad()
    def play(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of all runs; ``noise`` (runs, arms) is this step's reward noise.
        Returns the arms chosen (runs,) and the rewards received (runs,)."""
        t = int(self.t)
        if t >= self.steps:
            raise UserError(f"the testbed has data.steps={self.steps} steps and all were "
                            f"played; train for one epoch (trainer.max_epochs=1) or at most "
                            f"trainer.max_steps={self.steps} with data.batch_size=1")
        rows = torch.arange(self.runs, device=self.true_values.device)
        arms = self.select(t + 1)
        rewards = self.true_values[rows, arms] + noise.to(self.true_values)[rows, arms]
        self.learn(arms, rewards)
        self.reward_sum[t] = rewards.sum()
        self.optimal_count[t] = (arms == self.true_values.argmax(1)).sum()
        self.t += 1
        return arms, rewards

    @torch.no_grad()
    def training_step(self, batch: Any, handle: Any) -> None:
        for noise in RoundBatch.of(batch).extra:  # (runs, arms) per time step of the batch
            _arms, rewards = self.play(noise)
            handle.log("reward", rewards.mean())
        handle.log("optimal_action_fraction", self.optimal_count[int(self.t) - 1] / self.runs)

    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        """Per step of the batch ((B,) step indices): ``average_reward`` and
        ``optimal_action_fraction`` over the runs, and ``done`` (played yet)."""
        steps = RoundBatch.of(batch).index.to(self.reward_sum.device).clamp(0, self.steps - 1)
        return {"step": steps,
                "average_reward": self.reward_sum[steps] / self.runs,
                "optimal_action_fraction": self.optimal_count[steps].double() / self.runs,
                "done": steps < self.t}


def _check_epsilon(epsilon: float) -> float:
    if not 0.0 <= float(epsilon) <= 1.0:
        raise UserError(f"model.epsilon={epsilon} must be in [0, 1]")
    return float(epsilon)


def _check_alpha(alpha: float | None, sample_average_ok: bool = True) -> float | None:
    if alpha is None and sample_average_ok:
        return None
    if alpha is None or not float(alpha) > 0:
        raise UserError(f"model.alpha={alpha} must be a step size > 0"
                        + (" (or null: sample averages)" if sample_average_ok else ""))
    return float(alpha)


class ActionValueBandit(Bandit):
    """Action values Q (runs, arms) from initial value ``initial_value`` (optimistic when
    high), updated incrementally, Q <- Q + (R - Q) / N (sample average, section 2.4) or
    Q <- Q + alpha (R - Q) (constant step size ``alpha``, section 2.5)."""

    def __init__(self, *, runs: int, arms: int, steps: int, initial_value: float = 0.0,
                 alpha: float | None = None) -> None:
        super().__init__(runs=runs, arms=arms, steps=steps)
        self.initial_value, self.alpha = float(initial_value), _check_alpha(alpha)
        self.register_buffer("q", torch.full((self.runs, self.arms), self.initial_value,
                                             dtype=torch.float64))
        self.register_buffer("n", torch.zeros(self.runs, self.arms, dtype=torch.int64))

    def learn(self, arms: torch.Tensor, rewards: torch.Tensor) -> None:
        rows = torch.arange(self.runs, device=arms.device)
        self.n[rows, arms] += 1
        step = 1.0 / self.n[rows, arms].double() if self.alpha is None else self.alpha
        self.q[rows, arms] += step * (rewards - self.q[rows, arms])


class EpsilonGreedyBandit(ActionValueBandit):
    """Epsilon-greedy selection (section 2.2): the greedy arm (ties broken at random),
    except with probability ``epsilon`` a uniformly random arm; ``epsilon=0`` is greedy.
    With ``initial_value=5, alpha=0.1, epsilon=0`` it is the optimistic greedy learner of
    section 2.6 (figure 2.3)."""

    def __init__(self, *, runs: int, arms: int, steps: int, epsilon: float = 0.1,
                 initial_value: float = 0.0, alpha: float | None = None) -> None:
        super().__init__(runs=runs, arms=arms, steps=steps, initial_value=initial_value,
                         alpha=alpha)
        self.epsilon = _check_epsilon(epsilon)

    def label(self) -> str:
        start = f", Q1={self.initial_value:g}" if self.initial_value else ""
        return ("greedy" if self.epsilon == 0 else f"\u03b5-greedy \u03b5={self.epsilon:g}") + start

    def select(self, t: int) -> torch.Tensor:
        greedy = argmax_random_ties(self.q)
        explore = (torch.rand(self.runs, dtype=torch.float64) < self.epsilon).to(self.q.device)
        random_arm = torch.randint(0, self.arms, (self.runs,)).to(self.q.device)
        return torch.where(explore, random_arm, greedy)


class UCBBandit(ActionValueBandit):
    """Upper-confidence-bound selection (section 2.7, Auer et al. 2002):
    A_t = argmax_a [Q(a) + c sqrt(ln t / N(a))]; an arm not yet tried is a maximiser."""

    def __init__(self, *, runs: int, arms: int, steps: int, c: float = 2.0,
                 initial_value: float = 0.0, alpha: float | None = None) -> None:
        super().__init__(runs=runs, arms=arms, steps=steps, initial_value=initial_value,
                         alpha=alpha)
        if float(c) < 0:
            raise UserError(f"model.c={c} must be >= 0")
        self.c = float(c)

    def label(self) -> str:
        return f"UCB c={self.c:g}"

    def select(self, t: int) -> torch.Tensor:
        n = self.n.double()
        bonus = self.c * torch.sqrt(torch.log(torch.tensor(float(t), dtype=torch.float64)) / n)
        score = torch.where(self.n == 0, torch.full_like(n, float("inf")), self.q + bonus)
        return argmax_random_ties(score).to(self.q.device)


class GradientBandit(Bandit):
    """The gradient bandit (section 2.8, Williams 1992): preferences H (runs, arms),
    pi = softmax(H), A_t ~ pi, and after reward R_t
    H <- H + alpha (R_t - Rbar_t) (onehot(A_t) - pi), where the baseline Rbar_t is the
    average of the rewards before step t (Rbar_1 = R_1), or 0 with ``baseline=false``."""

    def __init__(self, *, runs: int, arms: int, steps: int, alpha: float = 0.1,
                 baseline: bool = True) -> None:
        super().__init__(runs=runs, arms=arms, steps=steps)
        self.alpha = _check_alpha(alpha, sample_average_ok=False)
        self.baseline = bool(baseline)
        self.register_buffer("h", torch.zeros(self.runs, self.arms, dtype=torch.float64))
        self.register_buffer("mean_reward", torch.zeros(self.runs, dtype=torch.float64))
        self._pi: torch.Tensor | None = None

    def label(self) -> str:
        return f"gradient bandit \u03b1={self.alpha:g}" + ("" if self.baseline else ", no baseline")

    def policy(self) -> torch.Tensor:
        return torch.softmax(self.h, dim=1)  # (runs, arms)

    def select(self, t: int) -> torch.Tensor:
        self._pi = self.policy()
        # inverse CDF of one uniform per run: A = #{a : cumsum(pi)_a < u}
        u = torch.rand(self.runs, 1, dtype=torch.float64).to(self._pi.device)
        return (self._pi.cumsum(1) < u).sum(1).clamp(max=self.arms - 1)

    def learn(self, arms: torch.Tensor, rewards: torch.Tensor) -> None:
        pi = self._pi if self._pi is not None else self.policy()
        t = int(self.t) + 1
        if self.baseline:
            base = rewards if t == 1 else self.mean_reward
        else:
            base = torch.zeros_like(rewards)
        onehot = torch.nn.functional.one_hot(arms, self.arms).double()
        self.h += self.alpha * (rewards - base)[:, None] * (onehot - pi)
        self.mean_reward += (rewards - self.mean_reward) / t
        self._pi = None
