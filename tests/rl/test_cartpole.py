"""CartPole: the hand-made expert balances for 500 steps, returns-to-go and their time-limit
bootstrap are right by hand, a REINFORCE run resumes bit-exactly through train.py, and a
missing gymnasium is one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from zoo.errors import UserError

gymnasium = pytest.importorskip("gymnasium")

from zoo.data.rl import CartPole
from zoo.models.rl.cartpole import Reinforce, expert_action, make_env


def test_the_expert_balances_for_the_whole_episode():
    env = make_env(500)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        steps = 0
        while True:
            obs, _r, terminated, truncated, _ = env.step(expert_action(obs))
            steps += 1
            if terminated or truncated:
                break
        assert steps == 500 and truncated and not terminated


def test_demonstrations_are_the_experts_actions():
    d = CartPole(demonstrations=2, demo_steps=30)
    obs, actions = d.demonstration_arrays()
    assert obs.shape == (60, 4) and actions.shape == (60,)
    assert actions.tolist() == [expert_action(o) for o in obs.tolist()]
    assert 0 < float(actions.float().mean()) < 1


def test_returns_to_go_and_the_time_limit_bootstrap():
    m = Reinforce(gamma=0.5)
    # a fall after 3 steps: G = 1 + .5 + .25, 1 + .5, 1
    assert m.returns_to_go(3).tolist() == [1.75, 1.5, 1.0]
    # cut by the time limit with v(last state) = 4: G_2 = 1 + .5 * 4 = 3, G_1 = 2.5, G_0 = 2.25
    assert m.returns_to_go(3, tail=4.0).tolist() == [2.25, 2.5, 3.0]


def test_policy_gradient_loss_by_hand():
    torch.manual_seed(0)
    m = Reinforce(gamma=0.5, normalize_advantages=False, value_coef=1.0)
    eps = m.run_episodes([1, 2], greedy=False)
    out = m.losses(eps)
    obs = torch.tensor(np.concatenate([np.stack(o) for o in eps.obs])).float()
    acts = torch.tensor([a for ep in eps.actions for a in ep])
    g = torch.cat([m.returns_to_go(len(a)) for a in eps.actions])  # both fell: no bootstrap
    v = m.value(obs)[:, 0] * 2.0                                   # 1 / (1 - gamma)
    logp = torch.log_softmax(m.policy(obs), 1)[torch.arange(len(acts)), acts]
    torch.testing.assert_close(out["loss_policy"], -(logp * (g - v).detach()).mean())
    torch.testing.assert_close(out["loss_value"], ((v - g) ** 2).mean() / 4)


SMALL = ["data.updates=6", "model.episodes=2", "data.val_episodes=2", "logger=none",
         "trainer.progress=false", "trainer.val_every_steps=3", "trainer.ckpt_every=2"]


def test_reinforce_resumes_bit_exactly_through_train_py(train, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train("model=reinforce_cartpole", *SMALL, f"hydra.run.dir={whole}") == 0
    assert train("model=reinforce_cartpole", *SMALL, "trainer.interrupt_at=4",
                 f"hydra.run.dir={parts}") == 0
    assert train(f"resume={parts}") == 0
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(parts / "checkpoints" / "last.pt", weights_only=True)
    assert int(a["model"]["updates"]) == 6 and int(a["model"]["env_steps"]) > 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_missing_gymnasium_is_one_line(train, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # import gymnasium raises ImportError
    from zoo.data.rl import require_gymnasium

    with pytest.raises(UserError, match=r'needs gymnasium: pip install -e "\.\[rl\]"'):
        require_gymnasium()
    assert train("model=bc_cartpole", "logger=none") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "gymnasium" in err[0]
