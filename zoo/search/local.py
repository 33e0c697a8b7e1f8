"""Local search on complete states: hill climbing and its variants, simulated annealing,
local and stochastic beam search, a genetic algorithm, gradient descent with restarts.

Each algorithm is built from ``configs/algo/NAME.yaml`` and runs once through
``solve(problem, rng) -> SearchResult``, drawing every random choice from ``rng`` (the
same seed gives the same run). What every result holds:

- ``path``: ``[start, final]`` of the run that was kept (a random restart keeps its best
  run); with ``trace=True`` ``extra["trace"]`` lists the current state after every step
  (the k states of a beam; the best state of a genetic population).
- ``cost``: minus the final value (attacking pairs, tour length, f(x)).
- ``expanded``: states whose value was computed; ``generated``: neighbours generated;
  ``max_frontier``: the states held at once (1; a beam's k; a population).
- ``solved``: ``problem.is_goal(final)``; ``optimal``: cost equals the known optimum.
- ``extra``: ``restarts``, ``steps`` (loop iterations, defined per class) and ``final_value``;
  ``gave_up`` (one line) when a problem with a goal was not solved.

Problems speak in *moves* when they subclass :class:`LocalProblem`: a move's change of
value is computed without building the neighbour (N-queens counts conflicts
incrementally, 2-opt looks at four edges), which is what makes 100-queens take well
under a second. Any other :class:`~zoo.search.base.Problem` works too, through its
``neighbours``/``random_neighbour``/``value`` (a neighbour is then its own move).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from zoo.errors import UserError, choices
from zoo.search.base import Algorithm, Problem, SearchResult, State

# Changes of value within EPS of zero count as ties: 2-opt deltas are differences of
# float sums, and a 1e-17 "improvement" both ways would let a climb cycle forever.
EPS = 1e-9


class LocalProblem(Problem):
    """A local-search problem whose neighbours are moves applied to a state.

    ``move_deltas`` returns every move with its change of value in one call (an array
    for problems that vectorise it); ``delta`` prices one move and ``apply`` builds the
    neighbour. ``genome`` tells the genetic algorithm which operators fit the state:
    ``"sequence"`` (any value per position, from ``gene_values``) or ``"permutation"``.
    """

    genome: str = "sequence"
    has_goal: bool = True

    def moves(self, state: State) -> Sequence[Any]:
        raise NotImplementedError

    def apply(self, state: State, move: Any) -> State:
        raise NotImplementedError

    def delta(self, state: State, move: Any) -> float:
        return self.value(self.apply(state, move)) - self.value(state)

    def move_deltas(self, state: State) -> tuple[Sequence[Any], np.ndarray]:
        ms = list(self.moves(state))
        return ms, np.array([self.delta(state, m) for m in ms], dtype=np.float64)

    def random_move(self, state: State, rng: random.Random) -> Any:
        ms = self.moves(state)
        return ms[rng.randrange(len(ms))]

    def gene_values(self, position: int) -> Sequence[Any]:
        raise NotImplementedError

    # the base class's neighbour interface, from the moves
    def neighbours(self, state: State):
        return (self.apply(state, m) for m in self.moves(state))

    def random_neighbour(self, state: State, rng: random.Random) -> State:
        return self.apply(state, self.random_move(state, rng))


class _NeighbourMoves:
    """A plain Problem seen as a LocalProblem: a move is the neighbour itself."""

    def __init__(self, problem: Problem) -> None:
        self.p = problem

    def __getattr__(self, name: str) -> Any:
        return getattr(self.p, name)

    def moves(self, state):
        return list(self.p.neighbours(state))

    def apply(self, state, move):
        return move

    def delta(self, state, move):
        return self.p.value(move) - self.p.value(state)

    def move_deltas(self, state):
        ms = self.moves(state)
        v = self.p.value(state)
        return ms, np.array([self.p.value(m) - v for m in ms], dtype=np.float64)

    def random_move(self, state, rng):
        return self.p.random_neighbour(state, rng)


def as_local(problem: Problem) -> Any:
    return problem if isinstance(problem, LocalProblem) else _NeighbourMoves(problem)


def _is_goal(p: Any, state: State) -> bool:
    if not getattr(p, "has_goal", True):
        return False
    try:
        return bool(p.is_goal(state))
    except NotImplementedError:
        return False


def _result(p: Any, start: State, final: State, *, expanded: int, generated: int, steps: int,
            t0: float, restarts: int = 0, trace: list | None = None, held: int = 1,
            **extra: Any) -> SearchResult:
    value = float(p.value(final))
    cost = 0.0 - value if value else 0.0
    opt = p.optimal_cost()
    info: dict[str, Any] = {"restarts": restarts, "steps": steps, "final_value": value, **extra}
    if trace is not None:
        info["trace"] = trace
    solved = _is_goal(p, final)
    if not solved and getattr(p, "has_goal", True):
        info["gave_up"] = _gave_up(value, steps, restarts)
    return SearchResult(path=[start, final], cost=cost, expanded=expanded + 1, generated=generated,
                        max_frontier=held, seconds=time.perf_counter() - t0, solved=solved,
                        optimal=None if opt is None else abs(cost - opt) <= 1e-6 * max(1.0, abs(opt)),
                        extra=info)


def _gave_up(value: float, steps: int, restarts: int) -> str:
    again = f" and {restarts} restarts" if restarts else ""
    return f"not solved: stopped at value {value:g} after {steps} steps{again}"


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise UserError(f"algo.{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _pick(indices: np.ndarray, rng: random.Random) -> int:
    return int(indices[rng.randrange(len(indices))])


# --------------------------------------------------------------------------- hill climbing
class HillClimbing(Algorithm):
    """Steepest-ascent hill climbing: move to the best neighbour (ties broken at random)
    while it is better; with ``max_sideways > 0`` also move to an equally good best
    neighbour, at most that many times in a row (a plateau or shoulder is left, a flat
    local maximum is not circled forever). A step is one move."""

    def __init__(self, max_steps: int = 10_000, max_sideways: int = 0, trace: bool = False) -> None:
        _check_positive("max_steps", max_steps)
        _check_positive("max_sideways", max_sideways, allow_zero=True)
        self.max_steps, self.max_sideways, self.trace = max_steps, max_sideways, trace

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        t0 = time.perf_counter()
        p = as_local(problem)
        start = s = p.random_state(rng)
        trace = [s] if self.trace else None
        expanded = generated = steps = sideways = 0
        while steps < self.max_steps and not _is_goal(p, s):
            ms, d = p.move_deltas(s)
            generated += len(ms)
            expanded += len(ms)
            if len(ms) == 0:
                break
            best = float(d.max())
            if best > EPS:
                sideways = 0
            elif best >= -EPS and sideways < self.max_sideways:
                sideways += 1
            else:
                break
            s = p.apply(s, ms[_pick(np.flatnonzero(d >= best - EPS), rng)])
            steps += 1
            if trace is not None:
                trace.append(s)
        return _result(p, start, s, expanded=expanded, generated=generated, steps=steps, t0=t0,
                       trace=trace, sideways=sideways)


class StochasticHillClimbing(Algorithm):
    """Stochastic hill climbing: move to a neighbour chosen at random among the better
    ones (uniformly, or with ``weighting: steepness`` in proportion to how much better);
    stop when none is better. A step is one move."""

    def __init__(self, max_steps: int = 10_000, weighting: str = "uniform",
                 trace: bool = False) -> None:
        _check_positive("max_steps", max_steps)
        if weighting not in ("uniform", "steepness"):
            raise UserError(f"unknown algo.weighting '{weighting}'; valid choices: steepness, uniform")
        self.max_steps, self.weighting, self.trace = max_steps, weighting, trace

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        t0 = time.perf_counter()
        p = as_local(problem)
        start = s = p.random_state(rng)
        trace = [s] if self.trace else None
        expanded = generated = steps = 0
        while steps < self.max_steps and not _is_goal(p, s):
            ms, d = p.move_deltas(s)
            generated += len(ms)
            expanded += len(ms)
            better = np.flatnonzero(d > EPS)
            if len(better) == 0:
                break
            if self.weighting == "uniform":
                i = _pick(better, rng)
            else:
                w = np.cumsum(d[better])
                i = int(better[min(int(np.searchsorted(w, rng.random() * w[-1], "right")),
                                   len(better) - 1)])
            s = p.apply(s, ms[i])
            steps += 1
            if trace is not None:
                trace.append(s)
        return _result(p, start, s, expanded=expanded, generated=generated, steps=steps, t0=t0,
                       trace=trace)


class FirstChoiceHillClimbing(Algorithm):
    """First-choice hill climbing: draw random neighbours until one is better and move
    there; stop after ``max_tries`` draws in a row that were not better (the neighbours
    need not be listed, only sampled). A step is one draw."""

    def __init__(self, max_steps: int = 100_000, max_tries: int = 1000, trace: bool = False) -> None:
        _check_positive("max_steps", max_steps)
        _check_positive("max_tries", max_tries)
        self.max_steps, self.max_tries, self.trace = max_steps, max_tries, trace

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        t0 = time.perf_counter()
        p = as_local(problem)
        start = s = p.random_state(rng)
        trace = [s] if self.trace else None
        steps = failures = 0
        while steps < self.max_steps and failures < self.max_tries and not _is_goal(p, s):
            m = p.random_move(s, rng)
            steps += 1
            if p.delta(s, m) > EPS:
                s = p.apply(s, m)
                failures = 0
            else:
                failures += 1
            if trace is not None:
                trace.append(s)
        return _result(p, start, s, expanded=steps, generated=steps, steps=steps, t0=t0,
                       trace=trace)


class RandomRestart(Algorithm):
    """Random-restart search: run ``algorithm`` (hill climbing unless given; any local
    algorithm) from fresh random states until one reaches a goal, ``restarts`` restarts
    were made or ``max_steps`` steps were spent in all; keep the best run. Counts and
    steps are summed over the runs."""

    def __init__(self, algorithm: Algorithm | None = None, restarts: int = 1000,
                 max_steps: int = 1_000_000) -> None:
        _check_positive("restarts", restarts, allow_zero=True)
        _check_positive("max_steps", max_steps)
        if algorithm is not None and not isinstance(algorithm, Algorithm):
            raise UserError("random_restart's algorithm must be an algorithm config with a _target_")
        self.algorithm = algorithm if algorithm is not None else HillClimbing()
        self.restarts, self.max_steps = restarts, max_steps

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        t0 = time.perf_counter()
        best: SearchResult | None = None
        expanded = generated = steps = runs = 0
        while True:
            r = self.algorithm.solve(problem, rng)
            runs += 1
            expanded += r.expanded
            generated += r.generated
            steps += r.extra.get("steps", 0)
            if best is None or (r.solved, -r.cost) > (best.solved, -best.cost):
                best = r
            if best.solved or runs > self.restarts or steps >= self.max_steps:
                break
        extra = {k: v for k, v in best.extra.items() if k not in ("restarts", "steps", "gave_up")}
        extra.update(restarts=runs - 1, steps=steps)
        if "gave_up" in best.extra:
            extra["gave_up"] = _gave_up(-best.cost, steps, runs - 1)
        return SearchResult(path=best.path, cost=best.cost, expanded=expanded, generated=generated,
                            max_frontier=best.max_frontier, seconds=time.perf_counter() - t0, solved=best.solved,
                            optimal=best.optimal, extra=extra)


# --------------------------------------------------------------------------- annealing
SCHEDULES = ("exponential", "linear", "log")


def temperature(schedule: str, t0: float, step: int, max_steps: int, alpha: float = 0.999) -> float:
    """T at ``step``: exponential ``t0 * alpha**step``; linear ``t0 * (1 - step/max_steps)``;
    log ``t0 * ln 2 / ln(step + 2)`` (the slow schedule with the convergence guarantee)."""
    if schedule == "exponential":
        return t0 * alpha ** step
    if schedule == "linear":
        return t0 * max(0.0, 1.0 - step / max_steps)
    if schedule == "log":
        return t0 * math.log(2.0) / math.log(step + 2.0)
    raise UserError(f"unknown algo.schedule '{schedule}'; valid choices: {choices(SCHEDULES)}")


def accept_probability(delta: float, t: float, tolerance: float | None = None) -> float:
    """Probability of moving to a neighbour whose value differs by ``delta``: 1 when it is
    better; ``exp(delta / T)`` when worse, and 0 when it is worse by more than
    ``tolerance`` (the notes' bound on how much worse a move may be) or T = 0 (hill
    climbing: only better moves). A tie is accepted at T > 0 (exp(0) = 1), not at T = 0."""
    if delta > EPS:
        return 1.0
    if t <= 0.0 or (tolerance is not None and -delta > tolerance):
        return 0.0
    return math.exp(min(0.0, delta) / t)


class SimulatedAnnealing(Algorithm):
    """Simulated annealing (Kirkpatrick et al. 1983): draw a random neighbour, move if it
    is better, else with probability ``exp(delta / T)`` (see :func:`accept_probability`);
    T follows ``schedule`` from ``t0`` (:func:`temperature`). At T = 0 no worse or equal
    move is taken and no acceptance number is drawn, so the run is first-choice hill
    climbing draw for draw. A step is one draw."""

    def __init__(self, max_steps: int = 500_000, schedule: str = "exponential", t0: float = 2.0,
                 alpha: float = 0.9995, t_min: float = 0.0, tolerance: float | None = None,
                 trace: bool = False) -> None:
        _check_positive("max_steps", max_steps)
        _check_positive("t0", t0, allow_zero=True)
        if schedule not in SCHEDULES:
            raise UserError(f"unknown algo.schedule '{schedule}'; valid choices: {choices(SCHEDULES)}")
        if not 0.0 < alpha <= 1.0:
            raise UserError(f"algo.alpha must be in (0, 1], got {alpha}")
        if tolerance is not None:
            _check_positive("tolerance", tolerance, allow_zero=True)
        self.max_steps, self.schedule, self.t0, self.alpha = max_steps, schedule, t0, alpha
        self.t_min, self.tolerance, self.trace = t_min, tolerance, trace

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        t0 = time.perf_counter()
        p = as_local(problem)
        start = s = p.random_state(rng)
        v = best_v = float(p.value(s))
        best = s
        trace = [s] if self.trace else None
        steps = accepted = worse = 0
        while steps < self.max_steps and not _is_goal(p, s):
            t = temperature(self.schedule, self.t0, steps, self.max_steps, self.alpha)
            if t < self.t_min:
                t = 0.0
            m = p.random_move(s, rng)
            d = float(p.delta(s, m))
            steps += 1
            if d > EPS:
                take = True
            else:
                pr = accept_probability(d, t, self.tolerance)
                take = pr > 0.0 and rng.random() < pr
                worse += take and d < -EPS
            if take:
                s = p.apply(s, m)
                v += d
                accepted += 1
                if v > best_v + EPS:
                    best, best_v = s, v
            if trace is not None:
                trace.append(s)
        # the run ends where it stands; the best state met is reported beside it
        return _result(p, start, s, expanded=steps, generated=steps, steps=steps, t0=t0,
                       trace=trace, accepted=accepted, accepted_worse=int(worse),
                       best_value=float(p.value(best)),
                       final_temperature=temperature(self.schedule, self.t0, steps,
                                                     self.max_steps, self.alpha))


# --------------------------------------------------------------------------- beams
class LocalBeam(Algorithm):
    """Local beam search: k random states; each step pools every neighbour of all k and
    keeps the k best distinct ones (information flows between the beams, unlike k
    independent restarts). Stops at a goal, after ``max_steps`` steps or after
    ``patience`` steps without a better best state. A step is one pooled selection;
    ``trace`` lists the whole beam after each."""

    stochastic = False

    def __init__(self, k: int = 10, max_steps: int = 1000, patience: int = 20,
                 temperature: float = 1.0, trace: bool = False) -> None:
        _check_positive("k", k)
        _check_positive("max_steps", max_steps)
        _check_positive("patience", patience)
        _check_positive("temperature", temperature)
        self.k, self.max_steps, self.patience = k, max_steps, patience
        self.temperature, self.trace = temperature, trace

    def _keys(self, values: np.ndarray, rng: random.Random) -> np.ndarray:
        """Candidates are taken in decreasing order of these keys: their values."""
        return values

    def _order(self, values: np.ndarray, rng: random.Random):
        """Candidate indices in the order they are taken: the top 4k by partial sort
        first (duplicates are rare), the rest only if those run out."""
        keys = self._keys(values, rng)
        m = min(len(keys), 4 * self.k)
        top = np.argpartition(-keys, m - 1)[:m] if m < len(keys) else np.arange(len(keys))
        top = top[np.argsort(-keys[top], kind="stable")]
        yield from top.tolist()
        if m < len(keys):
            rest = np.setdiff1d(np.arange(len(keys)), top)
            yield from rest[np.argsort(-keys[rest], kind="stable")].tolist()

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        t0 = time.perf_counter()
        p = as_local(problem)
        beam, tries = [], 0
        while len(beam) < self.k and tries < 100 * self.k:   # k distinct states when there are
            s = p.random_state(rng)
            tries += 1
            if s not in beam:
                beam.append(s)
        beam += [p.random_state(rng) for _ in range(self.k - len(beam))]
        values = [float(p.value(b)) for b in beam]
        expanded, generated = self.k, 0
        i_best = int(np.argmax(values))
        start, best, best_v = beam[i_best], beam[i_best], values[i_best]
        trace = [tuple(beam)] if self.trace else None
        steps = stale = 0
        while steps < self.max_steps and not any(_is_goal(p, b) for b in beam):
            owners, moves, cand = [], [], []
            for j, b in enumerate(beam):
                ms, d = p.move_deltas(b)
                owners.append(np.full(len(ms), j))
                moves.extend(ms)
                cand.append(values[j] + d)
            cv = np.concatenate(cand)
            generated += len(cv)
            expanded += len(cv)
            if len(cv) == 0:
                break
            owner = np.concatenate(owners)
            new, new_v, seen = [], [], set()
            for i in self._order(cv, rng):
                s = p.apply(beam[owner[i]], moves[i])
                if s in seen:
                    continue
                seen.add(s)
                new.append(s)
                new_v.append(float(cv[i]))
                if len(new) == self.k:
                    break
            beam, values = new, new_v
            steps += 1
            j = int(np.argmax(values))
            if values[j] > best_v + EPS:
                best, best_v, stale = beam[j], values[j], 0
            else:
                stale += 1
            if trace is not None:
                trace.append(tuple(beam))
            if stale >= self.patience:
                break
        goal = next((b for b in beam if _is_goal(p, b)), None)
        final = goal if goal is not None else best
        return _result(p, start, final, expanded=expanded, generated=generated, steps=steps,
                       t0=t0, trace=trace, held=self.k, k=self.k)


class StochasticBeam(LocalBeam):
    """Stochastic beam search: the k successors are drawn without replacement from the
    pooled neighbours with probability proportional to ``exp(value / temperature)``
    (the better, the likelier, but not always the k best)."""

    def _keys(self, values: np.ndarray, rng: random.Random) -> np.ndarray:
        # Efraimidis-Spirakis: taking the largest log(u)/w draws without replacement with
        # probabilities proportional to w = exp((v - max v) / temperature).
        g = np.random.default_rng(rng.getrandbits(64))
        logw = (values - values.max()) / self.temperature
        return np.log(g.random(len(values)) + 1e-300) * np.exp(-logw)


# --------------------------------------------------------------------------- genetic
def one_point_crossover(a: Sequence, b: Sequence, rng: random.Random) -> tuple:
    """The head of ``a`` up to a random cut, then the tail of ``b``."""
    c = rng.randrange(1, len(a)) if len(a) > 1 else 0
    return tuple(a[:c]) + tuple(b[c:])


def order_crossover(a: Sequence, b: Sequence, rng: random.Random) -> tuple:
    """Order crossover (OX1, Davis 1985): a random slice of ``a`` stays in place; the
    other positions take the missing elements in the order they appear in ``b`` after
    the slice. A permutation stays a permutation."""
    n = len(a)
    i, j = sorted(rng.sample(range(n + 1), 2)) if n > 1 else (0, n)
    child: list = [None] * n
    child[i:j] = a[i:j]
    kept = set(a[i:j])
    fill = [x for x in list(b[j:]) + list(b[:j]) if x not in kept]
    for pos, x in zip([*range(j, n), *range(i)], fill, strict=True):
        child[pos] = x
    return tuple(child)


def pmx_crossover(a: Sequence, b: Sequence, rng: random.Random) -> tuple:
    """Partially mapped crossover (Goldberg & Lingle 1985): a slice of ``a``; elsewhere
    ``b``'s element, followed through the slice's mapping until it is not in the slice."""
    n = len(a)
    i, j = sorted(rng.sample(range(n + 1), 2)) if n > 1 else (0, n)
    child = list(b)
    child[i:j] = a[i:j]
    mapping = {a[k]: b[k] for k in range(i, j)}
    for k in [*range(i), *range(j, n)]:
        x = b[k]
        while x in mapping:
            x = mapping[x]
        child[k] = x
    return tuple(child)


def swap_mutation(s: Sequence, rng: random.Random, problem: Any = None) -> tuple:
    """Exchange two random positions (keeps a permutation)."""
    t = list(s)
    if len(t) > 1:
        i, j = rng.sample(range(len(t)), 2)
        t[i], t[j] = t[j], t[i]
    return tuple(t)


def inversion_mutation(s: Sequence, rng: random.Random, problem: Any = None) -> tuple:
    """Reverse a random slice (keeps a permutation; a 2-opt move on a tour)."""
    t = list(s)
    if len(t) > 1:
        i, j = sorted(rng.sample(range(len(t) + 1), 2))
        t[i:j] = t[i:j][::-1]
    return tuple(t)


def reset_mutation(s: Sequence, rng: random.Random, problem: Any = None) -> tuple:
    """Give one random position a random value from ``problem.gene_values``."""
    t = list(s)
    i = rng.randrange(len(t))
    values = problem.gene_values(i)
    t[i] = values[rng.randrange(len(values))]
    return tuple(t)


CROSSOVERS = {"one_point": one_point_crossover, "order": order_crossover, "pmx": pmx_crossover}
MUTATIONS = {"reset": reset_mutation, "swap": swap_mutation, "inversion": inversion_mutation}
PERMUTATION_SAFE = {"order", "pmx", "swap", "inversion"}


def fitness_weights(values: Sequence[float]) -> list[float]:
    """Fitness for proportional selection from values that may be negative: the value
    above the population's worst (windowing), plus a floor of 1% of the spread so the
    worst keeps a small chance; all equal when the population is uniform."""
    lo, hi = min(values), max(values)
    floor = 0.01 * (hi - lo) if hi > lo else 1.0
    return [v - lo + floor for v in values]


class Genetic(Algorithm):
    """A genetic algorithm (Holland 1975): a population of random states; each
    generation draws parent pairs with probability proportional to fitness
    (:func:`fitness_weights`), crosses them over with probability ``crossover_rate``
    and mutates each child with probability ``mutation_rate``; the ``elite`` best pass
    unchanged. ``crossover``/``mutation`` ``auto`` pick order + inversion for a
    permutation genome, one-point + reset otherwise. A step is one generation."""

    def __init__(self, population: int = 100, max_steps: int = 1000, crossover: str = "auto",
                 mutation: str = "auto", crossover_rate: float = 0.9, mutation_rate: float = 0.3,
                 elite: int = 2, trace: bool = False) -> None:
        _check_positive("population", population)
        _check_positive("max_steps", max_steps)
        if crossover != "auto" and crossover not in CROSSOVERS:
            raise UserError(f"unknown algo.crossover '{crossover}'; valid choices: "
                            f"{choices(['auto', *CROSSOVERS])}")
        if mutation != "auto" and mutation not in MUTATIONS:
            raise UserError(f"unknown algo.mutation '{mutation}'; valid choices: "
                            f"{choices(['auto', *MUTATIONS])}")
        for name, r in (("crossover_rate", crossover_rate), ("mutation_rate", mutation_rate)):
            if not 0.0 <= r <= 1.0:
                raise UserError(f"algo.{name} must be in [0, 1], got {r}")
        if not 0 <= elite <= population:
            raise UserError(f"algo.elite must be in [0, population], got {elite}")
        self.population, self.max_steps = population, max_steps
        self.crossover, self.mutation = crossover, mutation
        self.crossover_rate, self.mutation_rate, self.elite = crossover_rate, mutation_rate, elite
        self.trace = trace

    def operators(self, p: Any) -> tuple[Any, Any]:
        perm = getattr(p, "genome", "sequence") == "permutation"
        cx = self.crossover if self.crossover != "auto" else ("order" if perm else "one_point")
        mu = self.mutation if self.mutation != "auto" else ("inversion" if perm else "reset")
        if perm:
            bad = [n for n in (cx, mu) if n not in PERMUTATION_SAFE]
            if bad:
                raise UserError(f"'{bad[0]}' does not keep a tour a permutation; use one of "
                                f"{choices(PERMUTATION_SAFE)}")
        if mu == "reset" and not isinstance(p, LocalProblem):
            raise UserError("the reset mutation needs a problem that lists its gene values "
                            "(e.g. problem=queens_local); set algo.mutation=swap or inversion")
        return CROSSOVERS[cx], MUTATIONS[mu]

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        t0 = time.perf_counter()
        p = as_local(problem)
        cross, mutate = self.operators(p)
        pop = [p.random_state(rng) for _ in range(self.population)]
        if not isinstance(pop[0], tuple | list):
            raise UserError("the genetic algorithm recombines states that are sequences "
                            f"(a {type(pop[0]).__name__} is not)")
        vals = [float(p.value(s)) for s in pop]
        expanded, generated = len(pop), 0
        i = max(range(len(pop)), key=vals.__getitem__)
        start, best, best_v = pop[i], pop[i], vals[i]
        trace = [best] if self.trace else None
        steps = 0
        while steps < self.max_steps and not _is_goal(p, best):
            order = sorted(range(len(pop)), key=lambda k: -vals[k])
            nxt = [pop[k] for k in order[:self.elite]]
            w = fitness_weights(vals)
            while len(nxt) < self.population:
                a, b = rng.choices(pop, weights=w, k=2)
                child = cross(a, b, rng) if rng.random() < self.crossover_rate else tuple(a)
                if rng.random() < self.mutation_rate:
                    child = mutate(child, rng, p)
                nxt.append(child)
                generated += 1
            pop = nxt
            vals = [float(p.value(s)) for s in pop]
            expanded += len(pop)
            steps += 1
            i = max(range(len(pop)), key=vals.__getitem__)
            if vals[i] > best_v + EPS:
                best, best_v = pop[i], vals[i]
            if trace is not None:
                trace.append(best)
        return _result(p, start, best, expanded=expanded, generated=generated, steps=steps, t0=t0,
                       trace=trace, held=self.population)


# --------------------------------------------------------------------------- continuous
class GradientDescent(Algorithm):
    """Gradient descent with random restarts on a continuous problem (one with a
    ``gradient`` of its value): from each random start take ``x <- x + lr * grad value``
    (descent on f = -value) for up to ``max_steps`` steps or until the gradient's norm
    is below ``tol``; restart until a goal or ``restarts`` restarts; keep the best.
    A step is one gradient step."""

    def __init__(self, lr: float = 0.002, max_steps: int = 500, restarts: int = 300,
                 tol: float = 1e-6, trace: bool = False) -> None:
        _check_positive("lr", lr)
        _check_positive("max_steps", max_steps)
        _check_positive("restarts", restarts, allow_zero=True)
        self.lr, self.max_steps, self.restarts, self.tol, self.trace = lr, max_steps, restarts, tol, trace

    def solve(self, problem: Problem, rng: random.Random) -> SearchResult:
        if not callable(getattr(problem, "gradient", None)):
            raise UserError("gradient_descent needs a continuous problem with a gradient "
                            "(e.g. problem=rastrigin)")
        t0 = time.perf_counter()
        best_run = None
        expanded = steps = runs = 0
        while True:
            start = x = np.asarray(problem.random_state(rng), dtype=np.float64)
            run_trace = [tuple(x)] if self.trace else None
            for _ in range(self.max_steps):
                g = np.asarray(problem.gradient(tuple(x)), dtype=np.float64)
                expanded += 1
                steps += 1
                if float(np.linalg.norm(g)) < self.tol:
                    break
                x = problem.clip(x + self.lr * g) if hasattr(problem, "clip") else x + self.lr * g
                if run_trace is not None:
                    run_trace.append(tuple(x))
            final = tuple(float(c) for c in x)
            v = float(problem.value(final))
            expanded += 1
            runs += 1
            goal = _is_goal(problem, final)
            if best_run is None or (goal, v) > (best_run[0], best_run[1]):
                best_run = (goal, v, tuple(float(c) for c in start), final, run_trace)
            if goal or runs > self.restarts:
                break
        _, _, start, final, run_trace = best_run
        return _result(problem, start, final, expanded=expanded - 1, generated=steps, steps=steps,
                       t0=t0, restarts=runs - 1, trace=run_trace)
