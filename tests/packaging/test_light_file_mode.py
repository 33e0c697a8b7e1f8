"""``evaluate.py task=detection`` on COCO json files is light: no torch (nor the task
registry) at all, matplotlib only for the plots and after the numbers are out; json is
parsed by orjson where it can be, and the files are checked column-wise, with exactly the
verdicts and messages of the entry-by-entry check."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.errors import UserError
from zoo.metrics.detection import coco_files as C
from zoo.metrics.files import DETECTION_KEYS, LIGHT_FILE_TASKS, _load_json

ROOT = Path(__file__).resolve().parents[2]


def _coco(n_images: int = 6, per_image: int = 5) -> tuple[dict, list]:
    """A small valid ground truth (ids that are not 0..N-1) and results list, in plain json."""
    images = [{"id": 100 + i, "width": 64, "height": 48} for i in range(n_images)]
    cats = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    anns, res = [], []
    for i in range(n_images):
        for j in range(3):
            anns.append({"image_id": 100 + i, "category_id": (3, 7)[j % 2],
                         "bbox": [2.0 * j, 3, 10 + j, 8], "area": 80.0 + j, "iscrowd": int(j == 2)})
        for j in range(per_image):
            res.append({"image_id": 100 + i, "category_id": (3, 7)[j % 2],
                        "bbox": [2.0 * j + 0.5, 3.5, 10, 7.5 + j], "score": 0.9 - 0.1 * j})
    return {"images": images, "annotations": anns, "categories": cats}, res


def _score_in_subprocess(tmp_path: Path, *extra: str) -> dict:
    gt, res = _coco()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    code = ("import json, sys\n"
            "from zoo.cli import evaluate_main\n"
            f"code = evaluate_main(['task=detection', 'gt={tmp_path}/gt.json', "
            f"'predictions={tmp_path}/res.json', 'output={tmp_path}/out', *{list(extra)!r}])\n"
            "print(json.dumps({'code': code, 'loaded': sorted(m for m in ('torch', 'matplotlib', "
            "'zoo.tasks', 'zoo.engine.utils') if m in sys.modules)}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          check=False, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_scoring_files_imports_no_torch(tmp_path):
    seen = _score_in_subprocess(tmp_path, "plots=false")
    assert seen == {"code": 0, "loaded": []}
    assert (tmp_path / "out" / "metrics.json").is_file()
    assert not (tmp_path / "out" / "pr_curves.png").exists()


def test_plots_draw_with_matplotlib_but_still_no_torch(tmp_path):
    seen = _score_in_subprocess(tmp_path)
    assert seen == {"code": 0, "loaded": ["matplotlib"]}
    assert (tmp_path / "out" / "pr_curves.png").is_file()


def test_numbers_are_printed_before_the_plots(tmp_path, capsys, monkeypatch):
    from zoo.metrics import files, plots

    order = []
    monkeypatch.setattr(files, "write_metrics", lambda *a: order.append("metrics.json"))
    monkeypatch.setattr(plots, "plot_pr_curves", lambda *a: order.append("plot") or tmp_path / "a.png")
    gt, res = _coco()
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(res))
    real_print = print
    monkeypatch.setattr("builtins.print", lambda *a, **k: (order.append("print"), real_print(*a, **k)))
    files.evaluate_files({"task": "detection", "gt": str(tmp_path / "g.json"),
                          "predictions": str(tmp_path / "r.json")})
    assert order.index("metrics.json") < order.index("print") < order.index("plot")


def test_light_tasks_say_what_the_task_registry_says():
    from zoo.tasks import get_task

    for name, (keys, required) in LIGHT_FILE_TASKS.items():
        options = get_task(name).file_options
        assert keys == {"task", *options}
        assert set(required) == {k for k, o in options.items() if o.required}
    assert LIGHT_FILE_TASKS["detection"][0] is DETECTION_KEYS


# --------------------------------------------------------------------------- parsing
def test_orjson_and_the_standard_library_read_the_same(tmp_path):
    pytest.importorskip("orjson")
    _, res = _coco()
    res[0]["score"] = 0.1 + 0.2  # a float that needs all 17 digits
    res[1]["bbox"] = [1e-320, 5e300, 1, 2]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(res))
    assert _load_json(str(path), "predictions") == json.loads(path.read_text()) == res


def test_nan_literals_fall_back_to_the_standard_library(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('[{"score": NaN}]')  # orjson refuses NaN; the checks then name the entry
    got = _load_json(str(path), "predictions")
    assert got[0]["score"] != got[0]["score"]


@pytest.mark.parametrize("where", ["gt", "predictions"])
def test_ids_past_64_bits_are_one_line(tmp_path, where):
    """orjson reads such integers as floats (two ids could become one) and the COCO
    evaluation keeps ids in 64 bits: a mistake, named before anything is scored."""
    from zoo.metrics.files import evaluate_files

    big = 2**70 + 1
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "x"}],
          "annotations": [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}]}
    res = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    if where == "gt":
        gt["images"].append({"id": big})
    else:
        res[0]["image_id"] = big
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "r.json").write_text(json.dumps(res))
    with pytest.raises(UserError, match=r"id 11805916207174113034\d\d does not fit in 64 bits"):
        evaluate_files({"task": "detection", "gt": str(tmp_path / "g.json"),
                        "predictions": str(tmp_path / "r.json"), "plots": "false"})


def test_invalid_json_is_one_line_from_the_standard_library(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('[{"score": 0.5,]')
    with pytest.raises(UserError, match=r"predictions file .* is not valid json \(Expecting"):
        _load_json(str(path), "predictions")


# --------------------------------------------------------------------------- column-wise checks
def _bad_results() -> list[tuple[str, object]]:
    def set_(i, key, value):
        return lambda r: r[i].__setitem__(key, value)

    return [
        ("no score", lambda r: r[3].pop("score")),
        ("no bbox", lambda r: r[4].pop("bbox")),
        ("string score", set_(2, "score", "0.5")),
        ("bool score", set_(2, "score", True)),
        ("nan score", set_(1, "score", float("nan"))),
        ("inf in box", set_(5, "bbox", [0, 0, float("inf"), 1])),
        ("three numbers", set_(5, "bbox", [0, 0, 1])),
        ("box a tuple-like dict", set_(5, "bbox", {"x": 1})),
        ("string in box", set_(6, "bbox", [0, "1", 2, 3])),
        ("negative width", set_(7, "bbox", [0, 0, -1, 3])),
        ("unknown image", set_(8, "image_id", 999)),
        ("unknown category", set_(9, "category_id", 5)),
        ("list image id", set_(8, "image_id", [100])),
        ("entry not a dict", lambda r: r.__setitem__(10, [1, 2])),
    ]


@pytest.mark.parametrize("name, corrupt", _bad_results(), ids=[n for n, _ in _bad_results()])
def test_columns_refuse_what_the_entry_check_refuses(name, corrupt):
    gt, res = _coco()
    image_ids = {im["id"] for im in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    assert C._bbox_results_valid(res, image_ids, cat_ids)
    corrupt(res)
    assert not C._bbox_results_valid(res, image_ids, cat_ids)
    with pytest.raises(UserError, match=r"predictions r.json: result #\d+"):
        C.check_coco_results(res, "r.json", "bbox", gt)


def _bad_gt() -> list[tuple[str, object]]:
    def ann(i, key, value):
        return lambda g: g["annotations"][i].__setitem__(key, value)

    return [
        ("no bbox", lambda g: g["annotations"][2].pop("bbox")),
        ("negative area", ann(1, "area", -1.0)),
        ("string area", ann(1, "area", "80")),
        ("crowd 2", ann(3, "iscrowd", 2)),
        ("difficult string", ann(3, "difficult", "1")),
        ("unknown image", ann(4, "image_id", 5)),
        ("unknown category", ann(4, "category_id", 4)),
        ("nan in box", ann(5, "bbox", [0, float("nan"), 1, 1])),
        ("image without id", lambda g: g["images"][0].pop("id")),
    ]


@pytest.mark.parametrize("name, corrupt", _bad_gt(), ids=[n for n, _ in _bad_gt()])
def test_gt_columns_refuse_what_the_entry_check_refuses(name, corrupt):
    gt, _ = _coco()
    need = ("image_id", "category_id", "bbox")
    assert C._gt_valid(gt, need, "bbox")
    corrupt(gt)
    assert not C._gt_valid(gt, need, "bbox")
    with pytest.raises(UserError, match=r"ground truth g.json: "):
        C.check_coco_gt(gt, "g.json", "bbox")


def test_columns_accept_what_the_entry_check_accepts():
    """Ints, floats, crowd flags as booleans, empty results: valid both ways."""
    gt, res = _coco()
    gt["annotations"][0]["iscrowd"] = True
    gt["annotations"][1].pop("area")
    res[0]["bbox"] = [1, 2, 3, 4]
    res[1]["score"] = 1
    for g, r in ((gt, res), (gt, [])):
        C.check_coco_gt(copy.deepcopy(g), "g.json", "bbox")
        C.check_coco_results(r, "r.json", "bbox", g)
        assert C._gt_valid(g, ("image_id", "category_id", "bbox"), "bbox")
        assert C._bbox_results_valid(r, {im["id"] for im in g["images"]}, {3, 7})
