"""python solve.py: run directories, result.json, pictures, sweeps and one-line mistakes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import one_line_error
from zoo.cli import solve_main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "zoo" / "configs"
KEYS = {"path", "cost", "expanded", "generated", "max_frontier", "seconds", "optimal"}


def solve(*args: str) -> int:
    return solve_main(list(args), config_dir=CONFIGS)




def test_8puzzle_astar_writes_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert solve("problem=8puzzle", "algo=astar", "heuristic=manhattan",
                 "problem.start=[1,2,3,4,5,6,0,7,8]", f"hydra.run.dir={run}") == 0
    r = json.loads((run / "result.json").read_text())
    assert KEYS <= set(r)
    assert r["path"] == [[1, 2, 3, 4, 5, 6, 0, 7, 8], [1, 2, 3, 4, 5, 6, 7, 0, 8],
                         [1, 2, 3, 4, 5, 6, 7, 8, 0]]
    assert (r["cost"], r["steps"], r["optimal"], r["optimal_cost"], r["heuristic"]) == (2, 2, True, 2, "manhattan")
    assert r["expanded"] == 2 and r["generated"] >= r["expanded"]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["problem"]["start"] == [1, 2, 3, 4, 5, 6, 0, 7, 8] and cfg["algo"]["heuristic"] == "manhattan"
    assert cfg["run_info"]["choices"] == {"problem": "8puzzle", "algo": "astar"}
    png = (run / "solution.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cost 2 (optimal), 2 steps" in capsys.readouterr().out


@pytest.mark.parametrize("problem, algo, extra", [
    ("grid", "bfs", []), ("romania", "ucs", []), ("nqueens", "dfs", ["problem.n=6"]),
    ("15puzzle", "astar", ["problem.seed=3"]), ("8puzzle", "bidirectional", ["problem.seed=3", "problem.scramble=12"]),
])
def test_each_problem_writes_a_picture(tmp_path, problem, algo, extra):
    run = tmp_path / "run"
    assert solve(f"problem={problem}", f"algo={algo}", *extra, f"hydra.run.dir={run}") == 0
    r = json.loads((run / "result.json").read_text())
    assert r["solved"] and KEYS <= set(r)
    assert (run / "solution.png").stat().st_size > 5000


def test_optimal_is_false_for_bfs_on_weighted_cells(tmp_path):
    assert solve("problem=grid", "algo=bfs", f"hydra.run.dir={tmp_path / 'b'}") == 0
    assert solve("problem=grid", "algo=ucs", f"hydra.run.dir={tmp_path / 'u'}") == 0
    bfs, ucs = (json.loads((tmp_path / d / "result.json").read_text()) for d in "bu")
    assert ucs["optimal"] is True and ucs["cost"] == ucs["optimal_cost"] == bfs["optimal_cost"]
    assert bfs["optimal"] is False and bfs["cost"] > ucs["cost"]


def test_default_run_dir_is_unique(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert solve("problem=romania") == 0
    assert solve("problem=romania") == 0
    runs = sorted(p.name for p in (tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 2 and all(r.split("_", 1)[1].startswith("romania_astar") for r in runs)


def test_sweep_prints_one_table(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert solve("-m", "algo=bfs,ids,ucs,astar", "problem=grid", "problem.rows=6", "problem.cols=8",
                 f"hydra.sweep.dir={sweep}") == 0
    out = capsys.readouterr().out
    table = (sweep / "table.md").read_text()
    assert table.strip() in out
    rows = [line for line in table.splitlines() if line.startswith("| ") and "overrides" not in line]
    assert [row.split("|")[4].strip() for row in rows] == ["bfs", "ids", "ucs", "astar"]
    for i in range(4):
        assert (sweep / str(i) / "result.json").is_file()


def test_gave_up_is_a_result_not_a_hang(tmp_path, capsys):
    run = tmp_path / "run"
    assert solve("problem=8puzzle", "algo=dfs", "algo.graph=false", "algo.max_expansions=300",
                 f"hydra.run.dir={run}") == 1
    assert "gave up after 300 expansions" in capsys.readouterr().out
    r = json.loads((run / "result.json").read_text())
    assert r["solved"] is False and r["path"] is None and r["expanded"] == 300


@pytest.mark.parametrize("args, expected", [
    (["problem=nope"], "unknown problem 'nope'; valid choices: 15puzzle, 8puzzle, grid, nqueens, queens_local, rastrigin, romania, tsp"),
    (["algo=dijkstra"], "unknown algo 'dijkstra'; valid choices: "),
    (["problem=nqueens", "algo=astar"], "algo=astar needs a heuristic and NQueens has none"),
    (["problem=8puzzle", "heuristic=euclid"], "no heuristic 'euclid'; its heuristics: manhattan, misplaced, gaschnig"),
    (["problem=8puzzle", "problem.start=[1,2,3,4,5,6,8,7,0]"], "cannot reach the goal"),
    (["problem=8puzzle", "problem.start=[1,2,3]"], "expected each of 0..8 once"),
    (["problem=nqueens", "algo=bidirectional"], "needs one goal state"),
    (["problem=romania", "problem.start=Paris"], "problem.start='Paris' is not a node of the map"),
    (["algo=bfs", "algo.max_expansions=-1"], "algo.max_expansions=-1: expected a positive number"),
    (["algo.no_such=1"], "bad override: no key 'algo.no_such'"),
    (["--verbose"], "unknown option '--verbose'"),
    (["-m", "algo=bfs", "--verbose"], "unknown option '--verbose'"),
])
def test_mistakes_are_one_line(tmp_path, capsys, args, expected):
    run = tmp_path / "never"
    assert solve(*args, f"hydra.run.dir={run}") == 2
    assert expected in one_line_error(capsys)
    assert not (run / "result.json").exists()


def test_a_local_only_problem_is_one_line(tmp_path, capsys, monkeypatch):
    # An algorithm asking for a method the problem lacks (a local-search step on a
    # problem without complete-state methods) is a mistake, not a traceback.
    from zoo.search.base import Problem, SearchResult
    from zoo.search.uninformed import BreadthFirst

    def local_step(self, problem, rng):
        problem.random_state(rng)
        return SearchResult(path=None, cost=None)

    monkeypatch.setattr(BreadthFirst, "solve", local_step)
    assert solve("problem=romania", "algo=bfs", f"hydra.run.dir={tmp_path / 'r'}") == 2
    err = one_line_error(capsys)
    assert "algo=bfs does not suit problem=romania: it needs random_state()" in err
    assert Problem.random_state  # the base method is the one that raised


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    run = tmp_path / "run"
    assert solve("problem=romania", f"hydra.run.dir={run}") == 0
    assert solve("problem=romania", f"hydra.run.dir={run}") == 2
    assert "already holds a run" in one_line_error(capsys)


def test_help_and_cfg(capsys):
    assert solve("--help") == 0
    out = capsys.readouterr().out
    assert "problem:    15puzzle, 8puzzle, grid, nqueens, queens_local, rastrigin, romania, tsp" in out and "bidirectional" in out
    assert solve("--cfg", "job", "problem=romania", "algo=greedy", "heuristic=sld", "--resolve") == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["algo"]["heuristic"] == "sld" and cfg["problem"]["start"] == "Arad"


def test_solve_py_entry(tmp_path):
    run = tmp_path / "run"
    p = subprocess.run([sys.executable, str(ROOT / "solve.py"), "problem=romania", "algo=bfs",
                        f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert json.loads((run / "result.json").read_text())["path"] == ["Arad", "Sibiu", "Fagaras", "Bucharest"]


def test_local_search_through_solve(tmp_path, capsys):
    """Local search runs through solve.py: its own step count, the optimum of a small TSP,
    and a large TSP (no goal test) reported by its cost rather than as unsolvable."""
    import json

    from zoo.cli import solve_main

    assert solve_main(["problem=tsp", "algo=random_restart", f"hydra.run.dir={tmp_path / 'a'}"]) == 0
    r = json.loads((tmp_path / "a" / "result.json").read_text())
    assert r["solved"] and r["optimal"] is True and r["optimal_cost"] is not None
    assert solve_main(["problem=tsp", "problem.n=12", "algo=annealing", "algo.max_steps=2000",
                       f"hydra.run.dir={tmp_path / 'b'}"]) == 0
    out = capsys.readouterr().out
    assert "no goal to test" in out and "no solution exists" not in out
    r = json.loads((tmp_path / "b" / "result.json").read_text())
    assert r["steps"] == 2000 and r["optimal"] is None


def test_local_search_on_incremental_queens_points_to_the_complete_state_problem(capsys):
    from zoo.cli import solve_main

    assert solve_main(["problem=nqueens", "algo=annealing"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "use problem=queens_local" in err
