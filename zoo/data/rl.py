"""Environments as data: the 10-armed testbed, tic-tac-toe games and CartPole episodes.

A reinforcement learner draws its own experience, so the training split is a sequence of
rounds that paces the trainer (one item per bandit step, per self-play game, or per
policy update) and the validation split lists what is scored (testbed steps, evaluation
games, evaluation episodes). Everything random in an environment is a function of the
data's ``seed`` and the item's index, so a resumed run and an evaluation see exactly the
same rewards, opponents and initial states.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from zoo.data.base import DataModule
from zoo.errors import DataError, UserError

GYMNASIUM_MISSING = ('CartPole (model=bc_cartpole, reinforce_cartpole, bc_reinforce_cartpole) '
                     'needs gymnasium: pip install -e ".[rl]"')


def require_gymnasium() -> Any:
    """The ``gymnasium`` module, or one ``UserError`` line saying how to install it."""
    try:
        import gymnasium
    except ImportError:
        raise UserError(GYMNASIUM_MISSING) from None
    return gymnasium


class RoundBatch(NamedTuple):
    """``index`` (B,) int64: which rounds (bandit steps, games, episodes) the batch holds;
    ``extra`` (B, ...) what the environment fixed for them in advance (the testbed's
    reward noise (B, runs, arms); an evaluation game's opponent and side (B, 2))."""

    index: torch.Tensor
    extra: torch.Tensor

    @classmethod
    def of(cls, batch: Any) -> RoundBatch:
        if isinstance(batch, cls):
            return batch
        return cls(*batch)


def collate_rounds(items: list[tuple[int, torch.Tensor]]) -> RoundBatch:
    return RoundBatch(torch.tensor([i for i, _ in items], dtype=torch.int64),
                      torch.stack([e for _, e in items]))


def _positive(name: str, value: Any) -> int:
    if int(value) < 1:
        raise DataError(f"data.{name}={value} must be at least 1")
    return int(value)


# -- the 10-armed testbed ---------------------------------------------------------------------
class _TestbedSteps(Dataset):
    """Item t: (t, reward noise (runs, arms)), standard normal, drawn from (seed, t)."""

    def __init__(self, steps: int, runs: int, arms: int, seed: int, noise: float) -> None:
        self.steps, self.runs, self.arms, self.seed, self.noise = steps, runs, arms, seed, noise

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, t: int) -> tuple[int, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * int(t) + 1)
        return int(t), self.noise * torch.randn(self.runs, self.arms, generator=g)


class _StepIndex(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, t: int) -> tuple[int, torch.Tensor]:
        return int(t), torch.zeros(0)


class TenArmedTestbed(DataModule):
    """Sutton & Barto's 10-armed testbed (Reinforcement Learning, 2nd ed., section 2.3).

    ``runs`` independent bandit problems, each with ``arms`` true action values
    q*(a) ~ N(true_mean, 1), drawn once from ``seed``; the reward of arm a at a step is
    q*(a) + N(0, noise^2). A training item is one time step: its index and the reward
    noise of every run and arm at that step (so every learner sees the same rewards for
    the same choices). The validation and test splits list the ``steps`` time steps, whose
    average reward and optimal-action fraction a learner recorded while training.
    """

    shuffle = False  # time steps in order

    def __init__(self, *, runs: int = 2000, steps: int = 1000, arms: int = 10,
                 true_mean: float = 0.0, noise: float = 1.0, seed: int = 0, **kw: Any) -> None:
        kw.setdefault("batch_size", 1)
        kw.setdefault("eval_batch_size", int(steps))
        super().__init__(runs=runs, steps=steps, arms=arms, true_mean=true_mean, noise=noise,
                         seed=seed, **kw)
        self.runs, self.steps = _positive("runs", runs), _positive("steps", steps)
        self.arms = _positive("arms", arms)
        if self.arms < 2:
            raise DataError(f"data.arms={arms}: a bandit needs at least 2 arms")
        self.seed, self.noise = int(seed), float(noise)
        g = torch.Generator().manual_seed(self.seed)
        # (runs, arms) true action values q*
        self.true_values = float(true_mean) + torch.randn(self.runs, self.arms, generator=g,
                                                          dtype=torch.float64)

    def build(self, split: str) -> Dataset:
        if split == "train":
            return _TestbedSteps(self.steps, self.runs, self.arms, self.seed, self.noise)
        return _StepIndex(self.steps)

    collate_fn = staticmethod(collate_rounds)


# -- tic-tac-toe ------------------------------------------------------------------------------
OPPONENTS = ("random", "perfect")


class _Games(Dataset):
    """Evaluation game i: (i, [opponent id, learner's side (0: X, moves first; 1: O),
    the seed of the game's random moves])."""

    def __init__(self, games: list[tuple[int, int, int]]) -> None:
        self.games = games

    def __len__(self) -> int:
        return len(self.games)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return int(i), torch.tensor(self.games[i], dtype=torch.int64)


class TicTacToeGames(DataModule):
    """Tic-tac-toe: ``episodes`` self-play training games (``batch_size`` per training
    step), and evaluation games against a random player and a perfect (minimax) player,
    half with the learner moving first. An evaluation game's random moves are drawn from
    (seed, game index), so every evaluation of a table plays the same games."""

    shuffle = False

    def __init__(self, *, episodes: int = 20000, random_games: int = 1000,
                 perfect_games: int = 200, seed: int = 0, **kw: Any) -> None:
        kw.setdefault("batch_size", 100)
        kw.setdefault("eval_batch_size", 200)
        super().__init__(episodes=episodes, random_games=random_games,
                         perfect_games=perfect_games, seed=seed, **kw)
        self.episodes = _positive("episodes", episodes)
        self.seed = int(seed)
        self.random_games, self.perfect_games = int(random_games), int(perfect_games)
        if self.random_games < 2 or self.perfect_games < 2:
            raise DataError("data.random_games and data.perfect_games must be at least 2 "
                            "(half with each side)")

    def build(self, split: str) -> Dataset:
        if split == "train":
            return _StepIndex(self.episodes)
        base = 10_000_000 * (1 if split == "val" else 2) + 100_000 * self.seed
        games: list[tuple[int, int, int]] = []
        for opp, n in ((0, self.random_games), (1, self.perfect_games)):
            games += [(opp, i % 2, base + 50_000 * opp + i) for i in range(n)]
        return _Games(games)

    collate_fn = staticmethod(collate_rounds)


# -- CartPole ---------------------------------------------------------------------------------
TRAIN_ON = ("demonstrations", "rollouts")


class _Demonstrations(Dataset):
    def __init__(self, obs: torch.Tensor, actions: torch.Tensor) -> None:
        self.obs, self.actions = obs, actions

    def __len__(self) -> int:
        return len(self.obs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.obs[i], self.actions[i]


def collate_demonstrations(items: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    from zoo.data.batches import LabelledBatch

    return LabelledBatch(torch.stack([o for o, _ in items]),
                         torch.stack([a for _, a in items]))


def collate_episodes(items: list[tuple[Any, torch.Tensor]]) -> Any:
    """Demonstration pairs -> LabelledBatch; episode seeds and update rounds -> RoundBatch."""
    return collate_rounds(items) if isinstance(items[0][0], int) else collate_demonstrations(items)


class CartPole(DataModule):
    """gymnasium's CartPole-v1 (Barto, Sutton & Anderson 1983), simulated locally.

    ``train_on=demonstrations``: the training split is (observation (4,), expert action)
    pairs from ``demonstrations`` episodes of the hand-made expert
    (``zoo.models.rl.cartpole.expert_action``), each cut after ``demo_steps`` steps:
    behaviour cloning learns from them. ``train_on=rollouts``: ``updates`` training items,
    one per policy-gradient update (the learner collects its own episodes). The
    validation and test splits are ``val_episodes`` / ``test_episodes`` episode seeds,
    disjoint from the seeds of the demonstrations and of training episodes.
    """

    def __init__(self, *, train_on: str = "demonstrations", demonstrations: int = 4,
                 demo_steps: int = 500, updates: int = 200, max_episode_steps: int = 500,
                 val_episodes: int = 20, test_episodes: int = 100, seed: int = 0,
                 **kw: Any) -> None:
        kw.setdefault("eval_batch_size", 10)
        super().__init__(train_on=train_on, demonstrations=demonstrations,
                         demo_steps=demo_steps, updates=updates,
                         max_episode_steps=max_episode_steps, val_episodes=val_episodes,
                         test_episodes=test_episodes, seed=seed, **kw)
        if train_on not in TRAIN_ON:
            raise DataError(f"unknown data.train_on '{train_on}'; valid: {', '.join(TRAIN_ON)}")
        self.train_on = train_on
        self.demonstrations = _positive("demonstrations", demonstrations)
        self.demo_steps = _positive("demo_steps", demo_steps)
        self.updates = _positive("updates", updates)
        self.max_episode_steps = _positive("max_episode_steps", max_episode_steps)
        self.val_episodes = _positive("val_episodes", val_episodes)
        self.test_episodes = _positive("test_episodes", test_episodes)
        self.seed = int(seed)
        self.shuffle = train_on == "demonstrations"
        require_gymnasium()

    # seeds: demonstrations 10^6+, validation 2*10^6+, test 3*10^6+; training episodes
    # are seeded by the learner from the global generator below 10^6
    def episode_seed(self, split: str, i: int) -> int:
        base = {"demo": 1, "val": 2, "test": 3}[split]
        return base * 1_000_000 + self.seed * 10_000 + int(i)

    def demonstration_arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 4) float32 observations and (N,) int64 expert actions."""
        from zoo.models.rl.cartpole import expert_action, make_env

        env = make_env(self.max_episode_steps)
        obs_list, act_list = [], []
        for i in range(self.demonstrations):
            obs, _ = env.reset(seed=self.episode_seed("demo", i))
            for _ in range(self.demo_steps):
                a = expert_action(obs)
                obs_list.append(torch.as_tensor(obs, dtype=torch.float32))
                act_list.append(a)
                obs, _r, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    break
        env.close()
        return torch.stack(obs_list), torch.tensor(act_list, dtype=torch.int64)

    def build(self, split: str) -> Dataset:
        if split == "train":
            if self.train_on == "demonstrations":
                return _Demonstrations(*self.demonstration_arrays())
            return _StepIndex(self.updates)
        n = self.val_episodes if split == "val" else self.test_episodes
        return _Seeds([self.episode_seed(split, i) for i in range(n)])

    collate_fn = staticmethod(collate_episodes)


class _Seeds(Dataset):
    def __init__(self, seeds: list[int]) -> None:
        self.seeds = seeds

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return int(i), torch.tensor(self.seeds[i], dtype=torch.int64)
