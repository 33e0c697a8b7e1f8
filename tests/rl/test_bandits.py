"""Bandits on the testbed: the incremental updates equal their closed forms, UCB and the
gradient bandit follow their formulas, a run through train.py resumes bit-exactly, and
evaluate.py scores the last 100 steps of the recorded curves."""

from __future__ import annotations

import json

import pytest
import torch

from zoo.data.rl import RoundBatch, TenArmedTestbed
from zoo.models.rl.bandits import EpsilonGreedyBandit, GradientBandit, UCBBandit

RUNS, ARMS, STEPS = 30, 5, 200


def _play(model, data, steps: int = STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(steps, runs) arms chosen and rewards received."""
    model.on_train_start(data)
    ds = data.dataset("train")
    arms, rewards = [], []
    for t in range(steps):
        a, r = model.play(ds[t][1])
        arms.append(a)
        rewards.append(r)
    return torch.stack(arms), torch.stack(rewards)


def _data() -> TenArmedTestbed:
    return TenArmedTestbed(runs=RUNS, steps=STEPS, arms=ARMS, seed=3)


def test_sample_average_updates_equal_the_mean_of_each_arms_rewards():
    torch.manual_seed(0)
    m = EpsilonGreedyBandit(runs=RUNS, arms=ARMS, steps=STEPS, epsilon=0.3, initial_value=2.0)
    arms, rewards = _play(m, _data())
    onehot = torch.nn.functional.one_hot(arms, ARMS).double()            # (T, runs, arms)
    counts = onehot.sum(0)
    sums = (onehot * rewards[..., None]).sum(0)
    expected = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, 2.0))
    assert torch.equal(m.n, counts.long())
    torch.testing.assert_close(m.q, expected, rtol=0, atol=1e-12)
    assert (counts > 0).sum() > RUNS * 3  # exploration tried most arms


def test_constant_step_size_is_the_exponential_recency_weighted_average():
    torch.manual_seed(1)
    alpha, q1 = 0.1, 5.0
    m = EpsilonGreedyBandit(runs=RUNS, arms=ARMS, steps=STEPS, epsilon=0.2, initial_value=q1,
                            alpha=alpha)
    arms, rewards = _play(m, _data())
    # Q_{n+1} = (1-a)^n Q_1 + sum_i a (1-a)^(n-i) R_i over each arm's own rewards (S&B eq. 2.6)
    expected = torch.full((RUNS, ARMS), q1, dtype=torch.float64)
    for r in range(RUNS):
        for a in range(ARMS):
            rs = rewards[arms[:, r] == a, r]
            n = len(rs)
            w = alpha * (1 - alpha) ** torch.arange(n - 1, -1, -1, dtype=torch.float64)
            expected[r, a] = (1 - alpha) ** n * q1 + (w * rs).sum()
    torch.testing.assert_close(m.q, expected, rtol=0, atol=1e-10)


def test_greedy_breaks_ties_at_random_and_explores_with_epsilon():
    torch.manual_seed(0)
    m = EpsilonGreedyBandit(runs=4000, arms=4, steps=1, epsilon=0.0)
    first = m.select(1)  # all values equal: uniform over the arms
    assert torch.bincount(first, minlength=4).min() > 800
    m.q[:, 2] = 1.0
    assert bool((m.select(2) == 2).all())
    m.epsilon = 0.4
    off = float((m.select(3) != 2).float().mean())
    assert abs(off - 0.4 * 3 / 4) < 0.03


def test_ucb_tries_every_arm_then_maximises_the_upper_bound():
    torch.manual_seed(0)
    m = UCBBandit(runs=1, arms=3, steps=10, c=2.0)
    m.n[0] = torch.tensor([3, 0, 1])
    assert int(m.select(5)) == 1  # an untried arm first
    m.n[0] = torch.tensor([3, 2, 1])
    m.q[0] = torch.tensor([1.0, 0.5, 0.2], dtype=torch.float64)
    t = 6
    bounds = m.q[0] + 2.0 * torch.sqrt(torch.log(torch.tensor(float(t), dtype=torch.float64)) / m.n[0])
    # by hand: 1 + 2 sqrt(ln6/3) = 2.54, 0.5 + 2 sqrt(ln6/2) = 2.39, 0.2 + 2 sqrt(ln6) = 2.88
    assert int(bounds.argmax()) == 2 and int(m.select(t)) == 2
    # c = 1: at t = 6 arm 0 (1 + sqrt(ln6/3) = 1.77 > 0.2 + sqrt(ln6) = 1.54); by t = 100 the
    # rarely tried arm 2 (0.2 + sqrt(ln100) = 2.35 > 1 + sqrt(ln100/3) = 2.24)
    m.c = 1.0
    assert int(m.select(6)) == 0 and int(m.select(100)) == 2


@pytest.mark.parametrize("baseline", [True, False])
def test_gradient_bandit_preference_update(baseline):
    torch.manual_seed(0)
    m = GradientBandit(runs=1, arms=3, steps=10, alpha=0.5, baseline=baseline)
    m.true_values[0] = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    _a1, r1 = m.play(torch.zeros(1, 3))   # step 1: Rbar_1 = R_1 (with the baseline): no change
    h_after_1 = m.h.clone()
    if baseline:
        assert torch.equal(h_after_1, torch.zeros(1, 3, dtype=torch.float64))
    # step 2: baseline R_1 (the mean of the rewards before); noise makes R_2 != R_1
    a2, r2 = m.play(torch.tensor([[0.3, -0.7, 1.1]]))
    pi = torch.softmax(h_after_1[0], 0)
    base = float(r1) if baseline else 0.0
    step = 0.5 * (float(r2) - base)
    expected = h_after_1[0] - step * pi
    expected[int(a2)] += step
    torch.testing.assert_close(m.h[0], expected, rtol=0, atol=1e-12)
    assert float(m.mean_reward) == pytest.approx((float(r1) + float(r2)) / 2)


def test_predict_reports_the_recorded_steps_only():
    torch.manual_seed(0)
    m = EpsilonGreedyBandit(runs=RUNS, arms=ARMS, steps=STEPS)
    _play(m, _data(), steps=7)
    out = m.predict(RoundBatch(torch.arange(10), torch.zeros(10, 0)))
    assert out["done"].tolist() == [True] * 7 + [False] * 3
    assert torch.equal(out["average_reward"][:7], m.reward_sum[:7] / RUNS)


SMALL = ["data.runs=40", "data.steps=60", "logger=none", "trainer.progress=false",
         "trainer.ckpt_every=7"]


def _state(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.parametrize("model", ["bandit_egreedy", "bandit_ucb", "bandit_gradient",
                                   "bandit_optimistic"])
def test_bandit_run_resumes_bit_exactly_through_train_py(train, tmp_path, model):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train(f"model={model}", *SMALL, f"hydra.run.dir={whole}") == 0
    assert train(f"model={model}", *SMALL, "trainer.interrupt_at=23",
                 f"hydra.run.dir={parts}") == 0
    assert int(_state(parts)["model"]["t"]) == 23
    assert train(f"resume={parts}") == 0
    a, b = _state(whole), _state(parts)
    assert int(a["model"]["t"]) == 60 and a["optimizers"] == {}
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert json.loads((whole / "metrics.json").read_text())["average_reward"] == \
        json.loads((parts / "metrics.json").read_text())["average_reward"]


def test_evaluate_writes_the_last_100_steps_and_the_curves(train, tmp_path):
    from zoo.cli import evaluate_main

    run = tmp_path / "run"
    assert train("model=bandit_ucb", "data.runs=40", "data.steps=150", "logger=none",
                 "trainer.progress=false", f"hydra.run.dir={run}") == 0
    assert evaluate_main([f"run={run}"]) == 0
    out = json.loads((run / "eval_test" / "metrics.json").read_text())
    state = _state(run)["model"]
    curve = state["reward_sum"] / 40
    assert out["average_reward"] == pytest.approx(float(curve[-100:].mean()), abs=1e-12)
    optimal = state["optimal_count"].double() / 40
    assert out["optimal_action_fraction"] == pytest.approx(float(optimal[-100:].mean()), abs=1e-12)
    assert len(out["curves"]["average_reward"]) == 150
    for png in ("average_reward.png", "optimal_action.png"):
        assert (run / "eval_test" / png).stat().st_size > 1000


def test_bad_settings_are_one_line_errors(train, capsys):
    assert train("model=bandit_egreedy", "model.epsilon=1.5", "logger=none") == 2
    assert "model.epsilon=1.5 must be in [0, 1]" in capsys.readouterr().err
    assert train("model=bandit_egreedy", "data.steps=5", "trainer.max_steps=6",
                 "trainer.max_epochs=null", "logger=none", "trainer.progress=false") == 2
    assert "data.steps=5 steps" in capsys.readouterr().err


@pytest.mark.slow
def test_ucb_beats_epsilon_greedy_over_the_last_500_steps(train, tmp_path):
    means = {}
    for model in ("bandit_ucb", "bandit_egreedy"):
        run = tmp_path / model
        assert train(f"model={model}", "logger=none", "trainer.progress=false",
                     f"hydra.run.dir={run}") == 0
        s = _state(run)["model"]
        means[model] = float(s["reward_sum"][-500:].mean() / s["true_values"].shape[0])
    assert means["bandit_ucb"] > means["bandit_egreedy"]


def test_curves_are_labelled_with_the_method_and_its_settings():
    from zoo.models.rl.bandits import EpsilonGreedyBandit, GradientBandit, UCBBandit
    from zoo.tasks import task_of

    kw = {"runs": 4, "arms": 3, "steps": 5}
    assert EpsilonGreedyBandit(**kw, epsilon=0.1).label() == "\u03b5-greedy \u03b5=0.1"
    assert EpsilonGreedyBandit(**kw, epsilon=0.0, initial_value=5.0).label() == "greedy, Q1=5"
    assert UCBBandit(**kw, c=2.0).label() == "UCB c=2"
    model = GradientBandit(**kw, alpha=0.1, baseline=False)
    assert task_of(model).build_evaluator(model, {}).label == "gradient bandit \u03b1=0.1, no baseline"
