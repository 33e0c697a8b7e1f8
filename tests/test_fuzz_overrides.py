"""Random bad overrides of the trainer/optim/sched/data-loader keys and the seed (wrong
types, out-of-range numbers, unknown keys, unknown config choices, broken syntax),
alone or beside valid ones, through the real train.py entry in-process: every case
ends in exit status 2 with exactly one `error:` line on stderr, no traceback, and no
run directory (validation fails before training starts).

The keys and their rules are drawn from the schemas themselves, so a key added to
zoo.engine.schema is fuzzed without a change here. Seeded: the same cases every run
(about 100; composing a config takes ~50 ms, the whole test a few seconds)."""

from __future__ import annotations

import random
import string
import types
from dataclasses import fields
from typing import Literal, Union, get_args, get_origin, get_type_hints

import pytest

from zoo.cli import train_main
from zoo.engine import schema
from zoo.engine.config import GROUPS

SEED = 20261201
CASES = 100
# Keys present in the default composition (logistic regression on digits, AdamW, cosine).
OPTIM_PRESENT = {"lr", "betas", "weight_decay"}
SCHED_PRESENT = {"warmup_steps", "warmup_start_factor"}
VALID_BESIDE = ["trainer.max_steps=3", "trainer.mode=min", "optim.lr=0.01", "data.batch_size=8",
                "seed=7", "model=mlp", "trainer.progress=false", "logger=none", "sched=constant"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8)))


def _typo(rng: random.Random, name: str) -> str:
    i = rng.randrange(len(name))
    kind = rng.choice(["drop", "double", "swap", "suffix"])
    if kind == "drop" and len(name) > 3:
        return name[:i] + name[i + 1:]
    if kind == "double":
        return name[:i] + name[i] + name[i:]
    if kind == "swap" and i + 1 < len(name) and name[i] != name[i + 1]:
        return name[:i] + name[i + 1] + name[i] + name[i + 2:]
    return name + "x"


def _bad_values(typ, meta: dict) -> list[str]:
    """Values (as a person types them) that the rule ``typ``/``meta`` refuses."""
    optional = get_origin(typ) in (Union, types.UnionType) and type(None) in get_args(typ)
    base = next(t for t in get_args(typ) if t is not type(None)) if optional else typ
    bad = ["[1,2]", "{a: 1}"]
    if not optional:
        bad.append("null")
    lo = meta.get("ge") if meta.get("ge") is not None else meta.get("gt")
    hi = meta.get("le") if meta.get("le") is not None else meta.get("lt")
    if base is int:
        bad += ["abc", "2.5", "true", "1x"]
        if meta.get("ge") is not None:
            bad += [str(int(meta["ge"]) - 1), str(int(meta["ge"]) - 7)]
    elif base is float:
        bad += ["abc", "true", "nan", "inf", "-inf"]
        if meta.get("ge") is not None:
            bad.append(str(meta["ge"] - 0.5))
        if meta.get("gt") is not None:
            bad.append(str(meta["gt"]))
        if meta.get("le") is not None:
            bad.append(str(meta["le"] + 1))
        if meta.get("lt") is not None:
            bad.append(str(meta["lt"]))
    elif base is bool:
        bad += ["maybe", "1", "0", "yes", "on_"]
    elif get_origin(base) is Literal:
        choices = get_args(base)
        bad += [c.upper() for c in choices] + ["ignore", "1", "true"]
    elif get_origin(base) is tuple:
        n = len(get_args(base))
        bad += ["abc", "[0.9]", "[0.9,0.99,0.5]"]
        if lo is not None:
            bad.append("[" + ",".join([str(lo - 0.1)] * n) + "]")
        if hi is not None:
            bad.append("[" + ",".join([str(hi)] * n) + "]")
    elif base is str:
        bad += ["123", "true"]
        if meta.get("pattern") is not None:
            bad += ["tpu", "gpu", "cuda:x", "CPU"]
    return bad


def _rules() -> list[tuple[str, str, list[str]]]:
    """(override prefix, key, bad values) for every schema key that can be overridden."""
    out = []
    for section, cls, present in (("trainer", schema.Trainer, None), ("optim", schema.Optim, OPTIM_PRESENT),
                                  ("sched", schema.Sched, SCHED_PRESENT),
                                  ("data", schema.DataLoader, None), ("", schema.Top, {"seed"})):
        hints = get_type_hints(cls)
        for f in fields(cls):
            if f.name in getattr(schema, "_HIDDEN", ()) or (present is not None and f.name not in present):
                continue
            bad = _bad_values(hints[f.name], f.metadata)
            if f.name in ("resume", "init_from") or hints[f.name] in (str,) and not f.metadata.get("pattern"):
                continue
            out.append(("", f"{section}.{f.name}" if section else f.name, bad))
    # Valid AdamW arguments that the default config does not hold: added with '+'.
    for name in ("eps", "amsgrad"):
        out.append(("+", f"optim.{name}", _bad_values(get_type_hints(schema.Optim)[name],
                                                      {f.name: f for f in fields(schema.Optim)}[name].metadata)))
    return out


def _cases() -> list[list[str]]:
    rng = random.Random(SEED)
    rules = _rules()
    trainer_keys = [f.name for f in fields(schema.Trainer) if f.name not in schema._HIDDEN]
    cases = []
    for _ in range(CASES):
        kind = rng.choices(["value", "unknown_key", "choice", "syntax"], weights=[60, 20, 14, 6])[0]
        if kind == "value":
            plus, key, bad = rng.choice(rules)
            override = f"{plus}{key}={rng.choice(bad)}"
        elif kind == "unknown_key":
            section, names = rng.choice([("trainer", trainer_keys), ("optim", sorted(OPTIM_PRESENT)),
                                         ("data", ["batch_size", "eval_batch_size", "num_workers"])])
            plus = rng.choice(["", "+"]) if section != "data" else ""
            name = _typo(rng, rng.choice(names))
            while name in names or (section == "optim" and name in ("eps", "foreach", "fused")):
                name = _typo(rng, name)
            override = f"{plus}{section}.{name}={rng.choice(['1', '0.5', 'true', 'abc'])}"
        elif kind == "choice":
            override = f"{rng.choice(GROUPS)}={_word(rng)}"
        else:
            override = rng.choice(["trainer.max_steps", "=5", "trainer.max_steps=[", "trainer.mode='max",
                                   "optim.lr=}", "trainer..max_steps=1"])
        key = override.split("=", 1)[0].lstrip("+")
        beside = rng.sample([v for v in VALID_BESIDE if v.split("=", 1)[0] != key], rng.randint(0, 2))
        case = beside + [override]
        rng.shuffle(case)
        cases.append(case)
    return cases


CASE_LIST = _cases()


def test_cases_are_varied():
    flat = [o for case in CASE_LIST for o in case]
    for prefix in ("trainer.", "optim.", "data.", "+trainer.", "+optim.", "model=", "seed="):
        assert any(o.startswith(prefix) for o in flat), prefix
    assert len({tuple(c) for c in CASE_LIST}) > 90


@pytest.mark.parametrize("case", CASE_LIST, ids=lambda c: " ".join(c)[:80])
def test_bad_override_is_one_line_and_exit_2(config_dir, capsys, tmp_path, case):
    run = tmp_path / "run"
    code = train_main([*case, f"hydra.run.dir={run}"], config_dir=config_dir)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (case, err)
    assert err.startswith("error: ") and len(err.splitlines()) == 1, (case, err)
    assert "Traceback" not in err and "Traceback" not in captured.out
    assert not run.exists(), "training started"
