"""CartPole policies: behaviour cloning, REINFORCE with a baseline, and the two in sequence.

Imitation then reinforcement learning, as the embodied-intelligence lecture pairs them:
a policy first copies an expert's demonstrations (behaviour cloning, Pomerleau 1989:
supervised cross-entropy on (observation, expert action) pairs), then improves on its
own experience by the policy gradient (REINFORCE, Williams 1992, with a learned
state-value baseline as in Sutton & Barto section 13.4). The environment is
gymnasium's CartPole-v1, simulated in this process (500 steps at most, reward 1 per
step, so the return is the number of steps the pole stayed up).

The expert is hand-made, not learned: push the cart toward the side the pole leans to,
by a linear (PD) rule on angle and angular velocity, with a little cart position and
velocity feedback so the cart stays on the track. It balances for all 500 steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.rl import RoundBatch, require_gymnasium
from zoo.errors import UserError
from zoo.models.base import ZooModel

# weights of (x, x_dot, theta, theta_dot) in the expert's push-right test
EXPERT_GAINS = (0.1, 0.5, 10.0, 2.0)


def expert_action(obs: Any) -> int:
    """The hand-made expert: 1 (push right) when 0.1 x + 0.5 x' + 10 theta + 2 theta' > 0."""
    x, x_dot, theta, theta_dot = (float(v) for v in obs)
    k = EXPERT_GAINS
    return int(k[0] * x + k[1] * x_dot + k[2] * theta + k[3] * theta_dot > 0)


def make_env(max_episode_steps: int = 500) -> Any:
    """CartPole-v1's dynamics with its time limit (no rendering, no checks per step)."""
    gym = require_gymnasium()
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    return gym.wrappers.TimeLimit(CartPoleEnv(), max_episode_steps=int(max_episode_steps))


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class Episodes:
    """Per episode: observations (T, 4), actions (T,), whether it was cut by the time
    limit (not failed) and the observation it was cut at."""

    def __init__(self) -> None:
        self.obs: list[list[np.ndarray]] = []
        self.actions: list[list[int]] = []
        self.truncated: list[bool] = []
        self.final_obs: list[np.ndarray] = []

    @property
    def returns(self) -> list[float]:
        return [float(len(a)) for a in self.actions]  # reward 1 per step

    @property
    def steps(self) -> int:
        return sum(len(a) for a in self.actions)


class CartPolePolicy(ZooModel):
    """Base: an MLP policy over CartPole's two actions, its environments and its
    evaluation (greedy episodes from the batch's seeds)."""

    task = "control"

    def __init__(self, *, hidden: int = 64, max_episode_steps: int = 500) -> None:
        super().__init__()
        require_gymnasium()
        self.policy = mlp([4, int(hidden), int(hidden), 2])
        self.max_episode_steps = int(max_episode_steps)
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.int64))
        self._envs: list[Any] = []

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(obs)  # (B, 2)

    def _env_pool(self, n: int) -> list[Any]:
        while len(self._envs) < n:
            self._envs.append(make_env(self.max_episode_steps))
        return self._envs[:n]

    def _numpy_policy(self) -> Callable[[np.ndarray], np.ndarray]:
        """The policy MLP as a numpy function (N, 4) -> (N, 2) logits: a rollout makes one
        tiny forward per time step, where torch's per-call overhead would dominate."""
        layers = [(m.weight.detach().cpu().double().numpy(), m.bias.detach().cpu().double().numpy())
                  for m in self.policy if isinstance(m, nn.Linear)]

        def forward(x: np.ndarray) -> np.ndarray:
            for i, (w, b) in enumerate(layers):
                x = x @ w.T + b
                if i < len(layers) - 1:
                    x = np.tanh(x)
            return x

        return forward

    @torch.no_grad()
    def run_episodes(self, seeds: list[int], greedy: bool) -> Episodes:
        """One episode per seed, all stepped together (one forward per time step).
        Stochastic actions are drawn from a generator seeded from torch's global one."""
        envs = self._env_pool(len(seeds))
        forward = self._numpy_policy()
        rng = None if greedy else np.random.default_rng(int(torch.randint(0, 2**62, ())))
        out = Episodes()
        obs = []
        for env, s in zip(envs, seeds):
            o, _ = env.reset(seed=int(s))
            obs.append(o)
            out.obs.append([])
            out.actions.append([])
            out.truncated.append(False)
            out.final_obs.append(o)
        alive = list(range(len(seeds)))
        while alive:
            logits = forward(np.stack([obs[i] for i in alive]).astype(np.float64))  # (n, 2)
            if rng is None:
                acts = logits.argmax(1)
            else:  # P(right) = sigmoid(l1 - l0)
                p_right = 1.0 / (1.0 + np.exp(np.clip(logits[:, 0] - logits[:, 1], -50, 50)))
                acts = (rng.random(len(alive)) < p_right).astype(np.int64)
            still = []
            for i, a in zip(alive, acts.tolist()):
                out.obs[i].append(obs[i])
                out.actions[i].append(int(a))
                obs[i], _r, terminated, truncated, _ = envs[i].step(int(a))
                if not (terminated or truncated):
                    still.append(i)
                else:
                    out.truncated[i] = bool(truncated and not terminated)
                    out.final_obs[i] = obs[i]
            alive = still
        return out

    @torch.no_grad()
    def predict(self, batch: Any) -> dict[str, torch.Tensor]:
        """Greedy episodes from the seeds in ``batch.extra`` (B,): ``return`` (B,) and the
        ``env_steps`` the policy has trained on."""
        seeds = [int(s) for s in RoundBatch.of(batch).extra.reshape(-1).tolist()]
        eps = self.run_episodes(seeds, greedy=True)
        return {"return": torch.tensor(eps.returns, dtype=torch.float32),
                "env_steps": self.env_steps.detach().cpu().clone()}


def _demonstrations(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    arrays = getattr(data, "demonstration_arrays", None)
    if arrays is None:
        raise UserError("behaviour cloning needs CartPole demonstrations (data=cartpole)")
    return arrays()


class BehaviourCloning(CartPolePolicy):
    """Behaviour cloning: cross-entropy of the policy's logits against the expert's
    action, on the (observation, action) pairs of ``data=cartpole`` (train_on
    demonstrations). The learner never acts while training: env_steps stays 0."""

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        obs, actions = batch
        logits = self.logits(obs)
        return {"loss_bc": F.cross_entropy(logits, actions),
                "log_agreement": (logits.argmax(1) == actions).float().mean().detach()}


class Reinforce(CartPolePolicy):
    """REINFORCE with a state-value baseline (Williams 1992; Sutton & Barto 13.4).

    A training step collects ``episodes`` episodes with the current stochastic policy,
    computes each step's discounted return-to-go G_t (``gamma``), and takes one
    optimizer step on  -mean(log pi(A_t|S_t) (G_t - v(S_t)))  +  value_coef * mean((v(S_t)
    - G_t)^2), where v is a separate network (its output is scaled by 1/(1-gamma) so it
    learns numbers near 1). ``normalize_advantages`` rescales G - v to unit variance per
    step. ``bc_epochs`` > 0 first clones the data's demonstrations (full-batch Adam at
    ``bc_lr``) before the first step: behaviour cloning then reinforcement learning.
    ``value_warmup`` updates train only the baseline (the policy kept), so a cloned
    policy is not pushed around by a baseline that knows nothing yet.
    """

    step_strategy = "manual"

    def __init__(self, *, hidden: int = 64, max_episode_steps: int = 500, gamma: float = 0.99,
                 episodes: int = 8, value_coef: float = 0.5, normalize_advantages: bool = True,
                 bc_epochs: int = 0, bc_lr: float = 0.01, value_warmup: int = 0) -> None:
        super().__init__(hidden=hidden, max_episode_steps=max_episode_steps)
        if not 0.0 < float(gamma) < 1.0:
            raise UserError(f"model.gamma={gamma} must be in (0, 1)")
        if int(episodes) < 1:
            raise UserError(f"model.episodes={episodes} must be at least 1")
        self.gamma, self.episodes = float(gamma), int(episodes)
        self.value_coef, self.normalize = float(value_coef), bool(normalize_advantages)
        self.bc_epochs, self.bc_lr, self.value_warmup = int(bc_epochs), float(bc_lr), int(value_warmup)
        self.value = mlp([4, int(hidden), int(hidden), 1])
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def on_train_start(self, data: Any, run_dir: str | None = None) -> None:
        if self.bc_epochs > 0:
            obs, actions = _demonstrations(data)
            clone(self.policy, obs, actions, epochs=self.bc_epochs, lr=self.bc_lr)

    def returns_to_go(self, rewards_len: int, tail: float = 0.0) -> torch.Tensor:
        """G_t = 1 + gamma G_{t+1} over an episode of reward 1 per step (T,), with G_T =
        ``tail``: 0 when the pole fell, the baseline's value of the last state when the
        time limit cut the episode (the task would have gone on; Pardo et al. 2018)."""
        g = torch.zeros(rewards_len, dtype=torch.float64)
        acc = float(tail)
        for t in range(rewards_len - 1, -1, -1):
            acc = 1.0 + self.gamma * acc
            g[t] = acc
        return g.float()

    def losses(self, eps: Episodes) -> dict[str, torch.Tensor]:
        device = next(self.parameters()).device
        obs = torch.as_tensor(np.concatenate([np.stack(o) for o in eps.obs]), dtype=torch.float32,
                              device=device)                                   # (T, 4)
        actions = torch.tensor([a for ep in eps.actions for a in ep], device=device)  # (T,)
        scale = 1.0 / (1.0 - self.gamma)
        with torch.no_grad():
            final = torch.as_tensor(np.stack(eps.final_obs), dtype=torch.float32, device=device)
            tails = (self.value(final)[:, 0] * scale).tolist()
        g = torch.cat([self.returns_to_go(len(a), tails[i] if eps.truncated[i] else 0.0)
                       for i, a in enumerate(eps.actions)]).to(device)                 # (T,)
        v = self.value(obs)[:, 0] * scale
        adv = (g - v).detach()
        if self.normalize and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        logp = torch.log_softmax(self.logits(obs), 1).gather(1, actions[:, None])[:, 0]
        out = {"loss_policy": -(logp * adv).mean(),
               "loss_value": self.value_coef * F.mse_loss(v / scale, g / scale)}
        if int(self.updates) < self.value_warmup:
            out["loss_policy"] = out["loss_policy"] * 0.0
        return out

    def training_step(self, batch: Any, handle: Any) -> None:
        seeds = torch.randint(0, 1_000_000, (self.episodes,)).tolist()
        eps = self.run_episodes(seeds, greedy=False)
        handle.backward(handle.forward(self.losses, eps), "main")
        handle.step("main")
        self.env_steps += eps.steps
        self.updates += 1
        handle.log("return", float(np.mean(eps.returns)))
        handle.log("env_steps", float(self.env_steps))


def clone(policy: nn.Module, obs: torch.Tensor, actions: torch.Tensor, *, epochs: int,
          lr: float) -> float:
    """Behaviour cloning in place: ``epochs`` full-batch Adam steps of cross-entropy on
    (obs (N, 4), actions (N,)); returns the final agreement with the expert."""
    device = next(policy.parameters()).device
    obs, actions = obs.to(device), actions.to(device)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(policy(obs), actions).backward()
        opt.step()
    with torch.no_grad():
        return float((policy(obs).argmax(1) == actions).float().mean())
