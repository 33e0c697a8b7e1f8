"""Local search: the textbook claims (annealing at T = 0 is hill climbing, hill climbing
never goes down, the GA's operators keep a tour a permutation, 2-opt with restarts finds
the brute-force optimum, 100-queens solved) and the problems' incremental bookkeeping."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from zoo.engine.config import build
from zoo.errors import UserError
from zoo.search.base import Algorithm, Problem, SearchResult
from zoo.search.local import (
    EPS,
    FirstChoiceHillClimbing,
    Genetic,
    GradientDescent,
    HillClimbing,
    LocalBeam,
    RandomRestart,
    SimulatedAnnealing,
    StochasticBeam,
    StochasticHillClimbing,
    accept_probability,
    fitness_weights,
    inversion_mutation,
    order_crossover,
    pmx_crossover,
    swap_mutation,
    temperature,
)
from zoo.search.local_problems import TSP, QueensLocal, Rastrigin

ROOT = Path(__file__).resolve().parents[2]
ALGOS = sorted(p.stem for p in (ROOT / "zoo" / "configs" / "algo").glob("*.yaml")
               if "zoo.search.local." in p.read_text())
PROBLEMS = ("queens_local", "tsp", "rastrigin")


def algo(name: str, **overrides):
    cfg = OmegaConf.load(ROOT / "zoo" / "configs" / "algo" / f"{name}.yaml")
    cfg.merge_with(overrides)
    return build(cfg, "algo")


def problem(name: str, **overrides):
    cfg = OmegaConf.load(ROOT / "zoo" / "configs" / "problem" / f"{name}.yaml")
    cfg.merge_with(overrides)
    return build(cfg, "problem")


def attacking_pairs(state) -> int:
    """From scratch, pair by pair: the reference for the incremental counts."""
    n = len(state)
    return sum(state[a] == state[b] or abs(state[a] - state[b]) == b - a
               for a in range(n) for b in range(a + 1, n))


def is_permutation(s, n: int) -> bool:
    return sorted(s) == list(range(n))


# --------------------------------------------------------------------------- configs
def test_every_local_config_builds_through_the_allow_list():
    assert set(ALGOS) >= {"hill_climbing", "sideways", "stochastic_hc", "first_choice",
                          "random_restart", "annealing", "beam", "stochastic_beam", "genetic",
                          "gradient_descent"}
    for name in ALGOS:
        assert isinstance(algo(name), Algorithm), name
    assert isinstance(algo("random_restart").algorithm, HillClimbing)
    assert algo("sideways").max_sideways > 0 and algo("hill_climbing").max_sideways == 0
    assert isinstance(problem("queens_local"), QueensLocal)
    assert isinstance(problem("tsp"), TSP)
    assert isinstance(problem("rastrigin"), Rastrigin)


def test_a_nested_algorithm_outside_the_allow_list_is_refused():
    cfg = OmegaConf.load(ROOT / "zoo" / "configs" / "algo" / "random_restart.yaml")
    cfg.algorithm = {"_target_": "os.system", "command": "true"}
    with pytest.raises(UserError):
        build(cfg, "algo")


@pytest.mark.parametrize("bad", [{"schedule": "cubic"}, {"max_steps": 0}, {"alpha": 1.5}])
def test_bad_annealing_settings_are_one_line_errors(bad):
    with pytest.raises(UserError):
        algo("annealing", **bad)


def test_bad_problem_settings_are_one_line_errors():
    with pytest.raises(UserError):
        QueensLocal(0)
    with pytest.raises(UserError):
        TSP(3)
    with pytest.raises(UserError, match="continuous"):
        GradientDescent().solve(QueensLocal(8), random.Random(0))
    with pytest.raises(UserError, match="permutation"):
        Genetic(crossover="one_point").solve(TSP(6), random.Random(0))
    with pytest.raises(UserError, match="sequences"):
        Genetic(mutation="swap").solve(Parabola(), random.Random(0))


# --------------------------------------------------------------------------- the result
@pytest.mark.parametrize(("name", "prob"), [(a, p) for a in ALGOS for p in PROBLEMS
                                             if a != "gradient_descent" or p == "rastrigin"])
def test_results_are_reproducible_and_complete(name, prob):
    small = {"max_steps": 300} if name not in ("random_restart",) else {"restarts": 3}
    p = problem(prob, n=12) if prob != "rastrigin" else problem(prob)
    a, b = (algo(name, **small).solve(p, random.Random(7)) for _ in range(2))
    assert (a.path, a.cost, a.expanded, a.generated, a.extra) == \
        (b.path, b.cost, b.expanded, b.generated, b.extra)
    final = a.path[-1]
    assert len(a.path) == 2
    assert a.cost == pytest.approx(-p.value(final))
    assert a.solved == p.is_goal(final)
    assert a.expanded > 0 and a.generated > 0
    assert {"restarts", "steps", "final_value"} <= set(a.extra)
    assert a.extra["final_value"] == pytest.approx(p.value(final))
    assert ("gave_up" in a.extra) == (not a.solved and p.has_goal)
    assert a.max_frontier == {"beam": 10, "stochastic_beam": 10, "genetic": 100}.get(name, 1)
    json.dumps(dataclasses.asdict(a))           # result.json can hold it


def test_a_different_seed_gives_a_different_run():
    p = QueensLocal(30)
    runs = {SimulatedAnnealing(max_steps=2000).solve(p, random.Random(s)).path[0]
            for s in range(3)}
    assert len(runs) == 3


# --------------------------------------------------------------------------- incremental bookkeeping
def test_queens_incremental_counts_equal_counting_from_scratch():
    rng = random.Random(0)
    for n in (1, 4, 8, 13):
        p = QueensLocal(n)
        s = p.random_state(rng)
        for _ in range(200):
            assert p.value(s) == -attacking_pairs(s)
            if n == 1:
                break
            ms, d = p.move_deltas(s)
            assert len(ms) == n * (n - 1)
            for m, dm in zip(ms[:: max(1, len(ms) // 25)], d[:: max(1, len(ms) // 25)], strict=True):
                t = QueensLocal(n).apply(s, m)      # a fresh instance: no shared counts
                assert dm == p.delta(s, m) == attacking_pairs(s) - attacking_pairs(t)
            s = p.apply(s, p.random_move(s, rng))


def test_tsp_two_opt_deltas_equal_the_change_of_length():
    p = TSP(11, seed=3)
    s = p.random_state(random.Random(1))
    ms, d = p.move_deltas(s)
    assert len(ms) == len(set(ms)) == 10 * 9 // 2 - 1
    for m, dm in zip(ms, d, strict=True):
        t = p.apply(s, m)
        assert is_permutation(t, 11)
        assert dm == pytest.approx(p.delta(s, m)) and dm == pytest.approx(p.length(s) - p.length(t))


def test_tsp_brute_force_equals_every_permutation():
    p = TSP(7, seed=5)
    best = min(p.length(t) for t in itertools.permutations(range(7)))
    assert p.optimal_cost() == pytest.approx(best)
    assert p.length(p.brute_force()[1]) == pytest.approx(best)


def test_rastrigin_gradient_matches_finite_differences():
    p = Rastrigin(dims=3)
    x = np.array([0.3, -1.7, 2.2])
    g = p.gradient(tuple(x))
    h = 1e-6
    fd = [(p.value(tuple(x + h * e)) - p.value(tuple(x - h * e))) / (2 * h) for e in np.eye(3)]
    assert np.allclose(g, fd, rtol=1e-5, atol=1e-5)
    for m in range(6):
        assert p.delta(tuple(x), m) == pytest.approx(p.value(p.apply(tuple(x), m)) - p.value(tuple(x)))


# --------------------------------------------------------------------------- the claims
@pytest.mark.parametrize("prob", [QueensLocal(8), QueensLocal(20), TSP(9, seed=2)])
@pytest.mark.parametrize("schedule", ["exponential", "linear", "log"])
def test_annealing_at_zero_temperature_is_first_choice_hill_climbing(prob, schedule):
    for seed in range(5):
        hc = FirstChoiceHillClimbing(max_tries=300, trace=True).solve(prob, random.Random(seed))
        sa = SimulatedAnnealing(t0=0.0, schedule=schedule, max_steps=hc.extra["steps"] + 50,
                                trace=True).solve(prob, random.Random(seed))
        h, a = hc.extra["trace"], sa.extra["trace"]
        assert len(h) > 10
        assert a[:len(h)] == h                       # the same state after every draw
        assert sa.extra["accepted_worse"] == 0


def test_annealing_below_t_min_is_hill_climbing_too():
    p = QueensLocal(12)
    hc = FirstChoiceHillClimbing(max_tries=200, trace=True).solve(p, random.Random(3))
    sa = SimulatedAnnealing(t0=5.0, t_min=100.0, trace=True,
                            max_steps=hc.extra["steps"]).solve(p, random.Random(3))
    assert sa.extra["trace"] == hc.extra["trace"]


def test_annealing_takes_worse_moves_when_hot():
    r = SimulatedAnnealing(t0=5.0, alpha=1.0, max_steps=2000).solve(QueensLocal(12), random.Random(0))
    assert r.extra["accepted_worse"] > 100


def test_acceptance_probability_is_exp_delta_over_t():
    assert accept_probability(0.5, 1.0) == 1.0
    assert accept_probability(-1.0, 2.0) == pytest.approx(math.exp(-0.5))
    assert accept_probability(-3.0, 0.5) == pytest.approx(math.exp(-6.0))
    assert accept_probability(0.0, 1.0) == 1.0
    assert accept_probability(0.0, 0.0) == 0.0 and accept_probability(-1.0, 0.0) == 0.0
    assert accept_probability(-2.0, 10.0, tolerance=1.5) == 0.0   # worse than tolerated
    assert accept_probability(-1.0, 10.0, tolerance=1.5) == pytest.approx(math.exp(-0.1))


def test_temperature_schedules():
    assert temperature("exponential", 2.0, 10, 100, alpha=0.9) == pytest.approx(2.0 * 0.9 ** 10)
    assert temperature("linear", 2.0, 25, 100) == pytest.approx(1.5)
    assert temperature("linear", 2.0, 100, 100) == 0.0
    assert temperature("log", 2.0, 0, 100) == pytest.approx(2.0)
    assert temperature("log", 2.0, 6, 100) == pytest.approx(2.0 * math.log(2) / math.log(8))
    with pytest.raises(UserError):
        temperature("cubic", 1.0, 0, 1)


@pytest.mark.parametrize("make", [
    lambda: HillClimbing(trace=True),
    lambda: HillClimbing(max_sideways=50, trace=True),
    lambda: StochasticHillClimbing(trace=True),
    lambda: StochasticHillClimbing(weighting="steepness", trace=True),
    lambda: FirstChoiceHillClimbing(trace=True),
])
@pytest.mark.parametrize("prob", [QueensLocal(16), TSP(14, seed=1)])
def test_hill_climbing_never_accepts_a_worse_state(make, prob):
    moved = 0
    for seed in range(5):
        r = make().solve(prob, random.Random(seed))
        values = [prob.value(s) for s in r.extra["trace"]]
        assert all(b >= a - EPS for a, b in itertools.pairwise(values))
        moved += sum(b > a + EPS for a, b in itertools.pairwise(values))
    assert moved > 10


def test_sideways_moves_are_capped():
    p = QueensLocal(8)
    for seed in range(20):
        r = HillClimbing(max_sideways=5, trace=True).solve(p, random.Random(seed))
        values = [p.value(s) for s in r.extra["trace"]]
        run = longest = 0
        for a, b in itertools.pairwise(values):
            run = run + 1 if b == a else 0
            longest = max(longest, run)
        assert longest <= 5


def test_sideways_moves_solve_more_8_queens_than_plain_hill_climbing():
    p = QueensLocal(8)
    plain = sum(HillClimbing().solve(p, random.Random(s)).solved for s in range(100))
    side = sum(HillClimbing(max_sideways=100).solve(p, random.Random(s)).solved for s in range(100))
    assert plain < 40 and side > 80     # the textbook's 14% and 94%


def _permutations(rng, n):
    a, b = list(range(n)), list(range(n))
    rng.shuffle(a)
    rng.shuffle(b)
    return tuple(a), tuple(b)


@pytest.mark.parametrize("n", [2, 3, 9, 30])
def test_genetic_operators_preserve_permutations(n):
    rng = random.Random(n)
    for _ in range(300):
        a, b = _permutations(rng, n)
        for cx in (order_crossover, pmx_crossover):
            assert is_permutation(cx(a, b, rng), n)
        for mu in (swap_mutation, inversion_mutation):
            assert is_permutation(mu(a, rng), n)


def test_crossover_keeps_a_slice_of_the_first_parent_in_place():
    rng = random.Random(0)
    for _ in range(100):
        a, b = _permutations(rng, 12)
        for cx in (order_crossover, pmx_crossover):
            state = rng.getstate()
            child = cx(a, b, rng)
            rng.setstate(state)
            i, j = sorted(rng.sample(range(13), 2))
            assert child[i:j] == a[i:j]


def test_genetic_population_on_tsp_stays_permutations():
    p = TSP(10, seed=4)
    r = Genetic(population=30, max_steps=60, trace=True).solve(p, random.Random(0))
    assert all(is_permutation(s, 10) for s in r.extra["trace"])
    assert r.cost <= -p.value(r.path[0]) + EPS       # the best only improves (elitism)


def test_fitness_is_proportional_to_the_value_above_the_worst():
    w = fitness_weights([-10.0, -6.0, -2.0])
    assert w == pytest.approx([0.08, 4.08, 8.08])
    assert fitness_weights([3.0, 3.0]) == [1.0, 1.0]


def test_genetic_algorithm_solves_8_queens():
    assert sum(Genetic().solve(QueensLocal(8), random.Random(s)).solved for s in range(5)) >= 3


@pytest.mark.parametrize("n", [6, 7, 8, 9])
def test_two_opt_with_random_restarts_reaches_the_brute_force_optimum(n):
    for seed in range(4):
        p = TSP(n, seed=seed)
        r = RandomRestart(HillClimbing(), restarts=200).solve(p, random.Random(seed))
        assert r.solved and r.optimal
        assert r.cost == pytest.approx(p.brute_force()[0], abs=1e-9)


def test_random_restart_counts_its_restarts():
    class ThirdTime(Algorithm):
        calls = 0

        def solve(self, problem, rng):
            ThirdTime.calls += 1
            solved = ThirdTime.calls == 3
            return SearchResult(path=[0, 0], cost=0.0 if solved else 1.0, expanded=2, generated=5,
                                solved=solved, extra={"steps": 4, "restarts": 0})

    r = RandomRestart(ThirdTime()).solve(QueensLocal(4), random.Random(0))
    assert r.solved and r.extra["restarts"] == 2 and r.extra["steps"] == 12
    assert (r.expanded, r.generated) == (6, 15)


@pytest.mark.parametrize("name", ["random_restart", "annealing"])
def test_100_queens_is_solved(name):
    p = problem("queens_local", n=100)
    for seed in range(3):
        r = algo(name).solve(p, random.Random(seed))
        assert r.solved and r.cost == 0 and attacking_pairs(r.path[-1]) == 0


def test_local_beam_keeps_k_distinct_states_and_solves_queens():
    p = QueensLocal(8)
    assert sum(LocalBeam(k=8).solve(p, random.Random(s)).solved for s in range(10)) >= 8
    for beam in (LocalBeam(k=30, trace=True), StochasticBeam(k=30, trace=True)):
        r = beam.solve(QueensLocal(5), random.Random(0))    # few states: duplicates abound
        assert r.extra["steps"] > 0
        assert all(len(set(b)) == len(b) == 30 for b in r.extra["trace"])


def test_stochastic_beam_draws_better_successors_more_often():
    beam = StochasticBeam(k=1, temperature=1.0)
    values = np.array([0.0, -1.0, -3.0])
    rng = random.Random(0)
    counts = np.zeros(3)
    for _ in range(4000):
        counts[next(beam._order(values, rng))] += 1
    p = np.exp(values) / np.exp(values).sum()
    assert np.allclose(counts / counts.sum(), p, atol=0.03)


def test_gradient_descent_with_restarts_finds_rastrigins_global_minimum():
    p = problem("rastrigin")
    r = algo("gradient_descent").solve(p, random.Random(0))
    assert r.solved and max(abs(c) for c in r.path[-1]) < 0.01
    one = GradientDescent(restarts=0).solve(p, random.Random(0))   # one descent: a local minimum
    assert not one.solved and one.extra["restarts"] == 0


def test_draw_writes_pictures(tmp_path):
    for p, a in [(QueensLocal(8), HillClimbing(max_sideways=100)), (TSP(7), HillClimbing()),
                 (Rastrigin(), GradientDescent(trace=True))]:
        r = a.solve(p, random.Random(0))
        r.extra["title"] = "some algorithm"
        out = tmp_path / f"{type(p).__name__}.png"
        p.draw(r, out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Parabola(Problem):
    """A plain Problem (no moves): integers 0..40, value -(x - 13)^2, neighbours x +- 1."""

    def random_state(self, rng):
        return rng.randrange(41)

    def neighbours(self, state):
        return [x for x in (state - 1, state + 1) if 0 <= x <= 40]

    def value(self, state):
        return -float((state - 13) ** 2)

    def is_goal(self, state):
        return state == 13


@pytest.mark.parametrize("name", [n for n in ALGOS if n not in ("gradient_descent", "genetic")])
def test_a_problem_with_only_neighbours_and_value_works_too(name):
    r = algo(name).solve(Parabola(), random.Random(0))
    assert r.solved and r.path[-1] == 13 and r.cost == 0
