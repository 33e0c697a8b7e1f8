"""The quality harness rewrites only what it measured: rows of the same key in a table of
the same columns, inside the README's markers, prose kept (no training here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("benchmarks_quality", ROOT / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(spec)
sys.modules["benchmarks_quality"] = quality  # dataclasses look their module up
spec.loader.exec_module(quality)

HEADER = "| model | value |\n|---|---|"
FAMILY = quality.Family(
    preface="preface", results="x", marker="t-table",
    sections=[quality.Section(None, [("model", lambda r: r["model"]),
                                     ("value", lambda r: str(r["value"]))])])
README = """# Title

<!-- t-table -->
Measured somewhere.

| model | value |
|---|---|
| a | 1 |
| b | 2 |

Usage prose stays.
<!-- /t-table -->

## After
"""


def test_partial_run_replaces_only_measured_rows(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(README)
    measured = [(FAMILY.sections[0], [["b", "20"], ["c", "30"]])]
    assert quality.write_block(path, "t-table", FAMILY, measured, complete=False) == []
    text = path.read_text()
    assert "| a | 1 |\n| b | 20 |\n| c | 30 |\n\nUsage prose stays." in text
    assert text.startswith("# Title\n\n<!-- t-table -->\nMeasured somewhere.")
    assert text.endswith("<!-- /t-table -->\n\n## After\n")


def test_complete_run_replaces_the_table_and_keeps_readme_prose(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(README.replace("| model | value |", "| name | number |"))  # other columns
    measured = [(FAMILY.sections[0], [["z", "9"]])]
    assert quality.write_block(path, "t-table", FAMILY, measured, complete=False)  # a note
    assert path.read_text() == README.replace("| model | value |", "| name | number |")
    quality.write_block(path, "t-table", FAMILY, measured, complete=True)
    text = path.read_text()
    assert f"Measured somewhere.\n\n{HEADER}\n| z | 9 |\n\nUsage prose stays." in text


def test_results_file_is_regenerated_after_a_complete_run(tmp_path):
    path = tmp_path / "x.md"
    path.write_text("old words\n\n" + HEADER + "\n| a | 1 |\n")
    measured = [(FAMILY.sections[0], [["a", "5"]])]
    quality.write_block(path, None, FAMILY, measured, complete=False)
    assert path.read_text() == "old words\n\n" + HEADER + "\n| a | 5 |\n"
    quality.write_block(path, None, FAMILY, measured, complete=True)
    assert path.read_text() == "preface\n\n" + HEADER + "\n| a | 5 |\n"


def test_families_and_arguments():
    a = quality.parse(["family=detection", "models=yolo,ssd", "trainer.max_epochs=3"])
    assert (a.family, a.models, a.overrides) == ("detection", ["yolo", "ssd"], ["trainer.max_epochs=3"])
    fams = quality.families(a)
    assert {"models", "classic", "sequence", "detection", "instance", "segmentation", "translation",
            "generative"} <= set(fams)
    configs = {p.stem for p in (ROOT / "zoo" / "configs" / "model").glob("*.yaml")}
    for fam in fams.values():
        for s in fam.sections:
            assert {e.model for e in s.experiments} <= configs
    assert quality.main(["family=nope"]) == 2
    assert quality.main(["family=detection", "models=lenet"]) == 2


def test_rows_select_runs_by_name(tmp_path, monkeypatch):
    a = quality.parse(["family=segmentation", "rows=unet_dice,unet"])
    assert a.rows == ["unet_dice", "unet"] and a.models == []
    trained = []

    def fake(exp, runs, extra, timeout):
        trained.append(exp.run_name)
        return {"model": exp.model, "overrides": " ".join(exp.overrides), "run": runs, "error": "x"}

    monkeypatch.setattr(quality, "train_and_eval", fake)
    out = ["--runs", str(tmp_path), "--results", str(tmp_path / "r.md"), "--readme", str(tmp_path / "R.md")]
    assert quality.main(["family=segmentation", "rows=unet_dice,unet", *out]) == 0
    assert trained == ["unet", "unet_dice"]   # the default row, then the dice row: no other loss
    assert quality.main(["family=segmentation", "rows=unet_nope", *out]) == 2


def test_resume_scores_finished_rows_and_continues_interrupted_ones(tmp_path, monkeypatch):
    import subprocess

    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "boom")

    monkeypatch.setattr(quality.subprocess, "run", fake_run)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "metrics.json").write_text("{}")
    (tmp_path / "done" / "config.yaml").write_text("run_info: {}\n")
    (tmp_path / "cut" / "checkpoints").mkdir(parents=True)
    (tmp_path / "cut" / "checkpoints" / "last.pt").write_bytes(b"")
    quality.train_and_eval(quality.Experiment("unet", name="done"), tmp_path, [], 10)
    assert calls[-1][1].endswith("evaluate.py")                       # no training at all
    quality.train_and_eval(quality.Experiment("unet", name="cut"), tmp_path, [], 10)
    assert calls[-1][1].endswith("train.py") and calls[-1][2] == f"resume={tmp_path / 'cut'}"
    quality.train_and_eval(quality.Experiment("unet", name="new"), tmp_path, [], 10)
    assert calls[-1][1].endswith("train.py") and calls[-1][2] == "model=unet"
