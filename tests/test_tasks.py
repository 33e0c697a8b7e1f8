"""The tasks layer: every model declares a registered task, each task refuses outputs of
the wrong form, checks predict.py options by type and range, writes into output=DIR,
draws pictures from the metadata it is given, and builds evaluators from the optional
``evaluator:`` node."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from zoo.cli import evaluate_main, predict_main, usage_evaluate, usage_predict
from zoo.data.batches import (
    CaptionBatch,
    DetectionBatch,
    LabelledBatch,
    SegmentationBatch,
    TokenBatch,
    labels_of,
)
from zoo.errors import UserError
from zoo.tasks import all_tasks, get_task, task_of
from zoo.tasks.base import ModelOutputError, Option, parse_options

ROOT = Path(__file__).resolve().parents[1]


def _model_targets() -> list[str]:
    out = []
    for p in sorted((ROOT / "zoo" / "configs" / "model").glob("*.yaml")):
        node = yaml.safe_load(p.read_text()).get("model", {})
        out.append(node["_target_"])
    return out


@pytest.mark.parametrize("target", _model_targets())
def test_every_model_declares_a_registered_task(target):
    from hydra.utils import get_class

    cls = get_class(target)
    assert cls.task, f"{target} declares no task"
    assert get_task(cls.task).name == cls.task


def test_usage_texts_come_from_the_registry():
    text = usage_predict()
    for task in all_tasks():
        if task.predict_options:
            assert task.predict_usage().split()[0] in text, task.name
    files = usage_evaluate()
    assert "task=detection" in files and "task=segmentation" in files
    assert "eval_<split>/metrics.json" in files
    with pytest.raises(UserError, match="valid tasks: detection, segmentation"):
        from zoo.metrics.files import evaluate_files

        evaluate_files({"task": "classification"})


# -- the output-form check -------------------------------------------------------------------
def _detection_batch(n: int = 2) -> DetectionBatch:
    targets = [{"boxes": torch.tensor([[1.0, 2.0, 10.0, 12.0]]), "labels": torch.tensor([1]),
                "image_id": torch.tensor(i)} for i in range(n)]
    return DetectionBatch([torch.rand(3, 16, 16) for _ in range(n)], targets)


def _detections(n: int = 2, cols: int = 4) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.rand(3, cols) * 10, "scores": torch.rand(3),
             "labels": torch.tensor([1, 2, 1])} for _ in range(n)]


def test_detector_with_five_column_boxes_is_refused():
    task, batch = get_task("detection"), _detection_batch()
    task.check_output(_detections(), batch)
    with pytest.raises(ModelOutputError, match=r"boxes must be \(N, 4\) xyxy, got \(3, 5\)"):
        task.check_output(_detections(cols=5), batch)
    with pytest.raises(ModelOutputError, match="list of 2 dicts"):
        task.check_output(_detections(n=1), batch)
    bad = _detections()
    bad[1]["labels"] = bad[1]["labels"].float()
    with pytest.raises(ModelOutputError, match="int64"):
        task.check_output(bad, batch)


def test_segmenter_with_per_image_logits_is_refused():
    task = get_task("segmentation")
    batch = SegmentationBatch(torch.rand(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)))
    task.check_output(torch.randn(2, 3, 8, 8), batch)             # per-pixel logits
    task.check_output(torch.randint(0, 3, (2, 8, 8)), batch)      # per-pixel class ids
    with pytest.raises(ModelOutputError, match=r"per-pixel logits \(2, C, 8, 8\).*\(2, 3\)"):
        task.check_output(torch.randn(2, 3), batch)               # one score vector per image
    with pytest.raises(ModelOutputError, match="masks' size"):
        task.check_output(torch.randn(2, 3, 4, 4), batch)


def test_other_tasks_refuse_wrong_forms():
    labelled = LabelledBatch(torch.rand(4, 1, 8, 8), torch.arange(4))
    get_task("classification").check_output(torch.randn(4, 10), labelled)
    with pytest.raises(ModelOutputError, match="3 rows of logits for a batch of 4"):
        get_task("classification").check_output(torch.randn(3, 10), labelled)
    with pytest.raises(ModelOutputError, match=r"\(B, C\) logits"):
        get_task("classification").check_output(torch.randn(4), labelled)
    tokens = TokenBatch(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long))
    get_task("language_modelling").check_output(torch.randn(2, 5, 7), tokens)
    with pytest.raises(ModelOutputError, match=r"logits \(2, 5, V\)"):
        get_task("language_modelling").check_output(torch.randn(2, 7), tokens)
    get_task("tagging").check_output(torch.zeros(2, 5, dtype=torch.long), tokens)
    with pytest.raises(ModelOutputError):
        get_task("tagging").check_output(torch.zeros(2, 5, 3), tokens)
    get_task("seq2seq").check_output(torch.zeros(2, 9, dtype=torch.long), tokens)
    with pytest.raises(ModelOutputError, match="int64 ids"):
        get_task("seq2seq").check_output(torch.randn(2, 9, 4), tokens)
    with pytest.raises(ModelOutputError, match=r"\(4,\) or \(4, 1\)"):
        get_task("regression").check_output(torch.randn(4, 2), labelled)


def test_typed_batches_unpack_like_tuples_and_accept_plain_pairs():
    x, y = torch.rand(3, 2), torch.arange(3)
    b = LabelledBatch(x, y)
    a, c = b
    assert a is x and c is y and LabelledBatch.of([x, y]).labels is y
    assert labels_of({"label": y}) is y
    with pytest.raises(TypeError, match="LabelledBatch"):
        LabelledBatch.of((x, y, y))
    from zoo.engine.utils import to_device

    moved = to_device(_detection_batch(), torch.device("cpu"))
    assert isinstance(moved, DetectionBatch) and len(moved.targets) == 2


def test_collate_functions_produce_typed_batches():
    from zoo.data.digits import DigitsData
    from zoo.data.seq_tasks import SeqTaskData
    from zoo.data.shapes import ShapesData

    data = DigitsData(batch_size=4)
    assert isinstance(data.collate_fn([data.dataset("val")[i] for i in range(4)]), LabelledBatch)
    shapes = ShapesData(num_train=2, num_val=2, num_test=2)
    assert isinstance(shapes.collate_fn([shapes.dataset("val")[i] for i in range(2)]), DetectionBatch)
    seq = SeqTaskData(task="reverse", train_size=4, val_size=4, test_size=4)
    assert isinstance(seq.collate_fn([seq.dataset("val")[i] for i in range(4)]), TokenBatch)


# -- options ---------------------------------------------------------------------------------
def test_predict_options_are_checked_by_type_and_range():
    spec = get_task("language_modelling").predict_options
    ok = parse_options({"temperature": "0", "max_new_tokens": "1e3", "top_p": "1"}, spec, "x")
    assert ok["temperature"] == 0 and ok["max_new_tokens"] == 1000 and ok["top_p"] == 1.0
    for options, message in [({"temperature": "-1"}, "temperature must be >= 0, got -1"),
                             ({"temperature": "hot"}, "temperature must be a number"),
                             ({"temperature": "nan"}, "finite"),
                             ({"max_new_tokens": "1e8"}, "max_new_tokens must be >= 0 and <= 100000"),
                             ({"max_new_tokens": "2.5"}, "whole number"),
                             ({"top_p": "0"}, "top_p must be > 0 and <= 1"),
                             ({"top_k": "0"}, "top_k must be >= 1"),
                             ({"num_samples": "0"}, "num_samples must be >= 1"),
                             ({"promt": "x"}, "unknown option 'promt'.*valid options")]:
        with pytest.raises(UserError, match=message):
            parse_options(options, spec, "x")
    with pytest.raises(UserError, match="needs images="):
        parse_options({}, get_task("classification").predict_options, "a classifier")
    assert Option("int", low=1).usage("k") == "[k=N]"


@pytest.mark.parametrize("argv, message", [
    (["run=/tmp", "batch_size=abc"], "batch_size must be a whole number, got 'abc'"),
    (["run=/tmp", "batch_size=0"], "batch_size must be >= 1"),
])
def test_evaluate_options_are_one_line(capsys, argv, message):
    assert evaluate_main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# -- predict.py through the tasks ------------------------------------------------------------
class _Run:
    def __init__(self, model, data):
        self.model, self.data, self.run_dir = model.eval(), data, Path("RUN")


def test_classifier_predict_writes_into_the_output_folder(tmp_path, capsys):
    from PIL import Image

    from zoo.data.digits import DigitsData
    from zoo.models.classification.resnet import ResNet

    data = DigitsData()
    run = _Run(ResNet(num_classes=10, depth=18, in_channels=1, small_input=True), data)
    image = tmp_path / "digit.png"
    Image.new("L", (8, 8), 128).save(image)
    out = tmp_path / "out" / "deeper"
    written = get_task("classification").predict(run, {"images": str(image), "topk": "2"}, out)
    assert written == [out / "predictions.txt"]
    assert out.is_dir() and str(image) in (out / "predictions.txt").read_text()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file; output= names a folder"):
        get_task("classification").predict(run, {"images": str(image)}, tmp_path / "file")
    with pytest.raises(UserError, match="topk must be >= 1"):
        get_task("classification").predict(run, {"images": str(image), "topk": "0"}, None)


def test_long_generation_runs_in_chunks_with_a_progress_bar(monkeypatch, capsys):
    from zoo.models.transformer.gpt import GPT
    from zoo.tasks import language_modelling as lm

    torch.manual_seed(0)
    model = GPT(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=8).eval()
    ids = torch.tensor([[1, 2, 3]])
    whole = model.generate(ids, 12, temperature=0)
    monkeypatch.setattr(lm, "CHUNK", 5)
    chunked = lm.generate(model, ids, 12, 0.0, None, None, torch.Generator())
    assert torch.equal(chunked, whole) and chunked.shape == (1, 15)
    assert "generating" in capsys.readouterr().err


def test_word2vec_output_folder_holds_the_vectors(tmp_path):
    from zoo.data.seq_tasks import PlantedClusterData
    from zoo.models.sequence.word2vec import Word2Vec

    data = PlantedClusterData()
    model = Word2Vec(vocab_size=len(data.meta["words"]), dim=4)
    written = get_task("embeddings").predict(_Run(model, data), {}, tmp_path / "o")
    lines = (tmp_path / "o" / "vectors.txt").read_text().splitlines()
    assert written == [tmp_path / "o" / "vectors.txt"] and lines[0] == f"{len(data.meta['words'])} 4"
    with pytest.raises(UserError, match="word=WORD"):
        get_task("embeddings").predict(_Run(model, data), {}, None)


# -- pictures --------------------------------------------------------------------------------
def test_pictures_name_classes_from_the_metadata_they_are_given():
    """A resumed run never calls on_train_start: names must come with the metadata."""

    task, batch = get_task("detection"), _detection_batch()
    preds = [{"boxes": torch.tensor([[2.0, 2.0, 12.0, 12.0]]), "scores": torch.tensor([0.9]),
              "labels": torch.tensor([2])} for _ in range(2)]
    named = task.images(batch, preds, {"num_classes": 2, "class_names": ["ant", "bee"]})["val/detections"]
    plain = task.images(batch, preds, {"num_classes": 2})["val/detections"]
    assert named.shape[0] == 3 and not torch.equal(named, plain)


def test_classifier_grid_names_the_true_class_and_marks_wrong_ones():
    task = get_task("classification")
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0]])  # right, then wrong
    meta = {"num_classes": 2, "class_names": ["cat", "dog"]}
    grid = task.images(LabelledBatch(x, y), logits, meta)["predictions"]
    red = (grid[0] > 0.8) & (grid[1] < 0.35)
    green = (grid[1] > 0.7) & (grid[0] < 0.35)
    assert green[:, :64].any() and not red[:64, :64].any() and red[:64, 64:128].any()
    # two wrong predictions of "cat" that differ only in the true class: the text differs
    meta3 = {"num_classes": 3, "class_names": ["cat", "dog", "eel"]}
    logits3 = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    dog = task.images(LabelledBatch(x, torch.tensor([1, 1])), logits3, meta3)["predictions"]
    eel = task.images(LabelledBatch(x, torch.tensor([2, 2])), logits3, meta3)["predictions"]
    assert not torch.equal(dog, eel)


def test_caption_picture_shows_generated_and_true_captions():
    from zoo.tasks.captioning import decode_words

    itos = ["<pad>", "<bos>", "<eos>", "<unk>", "a", "circle", "square"]
    batch = CaptionBatch(torch.rand(2, 3, 16, 16), torch.tensor([[1, 4, 5, 2], [1, 4, 6, 2]]))
    preds = torch.tensor([[4, 5, 2], [4, 5, 2]])  # right, then wrong
    pic = get_task("captioning").images(batch, preds, {"vocab": itos})["captions"]
    assert decode_words([4, 6, 2, 5], itos) == "a square"
    half, text = pic.shape[1] // 2, pic[:, :, 96:]  # rows of (96-pixel image, captions)
    red = (text[0] > 0.8) & (text[1] < 0.35) & (text[2] < 0.35)
    green = (text[1] > 0.7) & (text[0] < 0.35)
    assert green[:half].any() and not red[:half].any() and red[half:].any()
    # the true caption is written too: another true caption, same generated one
    other = CaptionBatch(batch.images, torch.tensor([[1, 4, 5, 2], [1, 6, 6, 2]]))
    assert not torch.equal(pic, get_task("captioning").images(other, preds, {"vocab": itos})["captions"])


# -- evaluators from the evaluator: node -----------------------------------------------------
def _masked(box: list[float], size: int = 16) -> torch.Tensor:
    m = torch.zeros(1, size, size, dtype=torch.bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[0, y0:y1, x0:x1] = True
    return m


def test_detection_evaluator_node_picks_protocols_and_iou_types():
    from zoo.models.detection.yolov1 import YOLOv1

    task, model = get_task("detection"), YOLOv1(num_classes=2, image_size=64)
    meta = {"num_classes": 2, "class_names": ["ant", "bee"]}
    box = [2.0, 2.0, 10.0, 12.0]
    batch = DetectionBatch([torch.rand(3, 16, 16)], [{"boxes": torch.tensor([box]),
                                                      "labels": torch.tensor([1]),
                                                      "masks": _masked(box), "image_id": 0}])
    pred = [{"boxes": torch.tensor([box]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1]),
             "masks": _masked(box)}]
    ev = task.build_evaluator(model, meta, {"protocols": ["coco"]})
    ev.update(pred, batch)
    out = ev.compute()
    assert out["map_50"] == pytest.approx(1.0) and "voc07_map" not in out
    both = task.build_evaluator(model, meta, {"iou_types": "bbox,segm", "protocols": "coco,voc07"})
    both.update(pred, batch)
    out = both.compute()
    assert out["map"] == pytest.approx(1.0) and out["mask_map"] == pytest.approx(1.0)
    assert "voc07_map" in out and "mask_voc07_map" not in out
    with pytest.raises(UserError, match="unknown evaluator setting 'protocol'"):
        task.build_evaluator(model, meta, {"protocol": "coco"})
    with pytest.raises(UserError, match="evaluator.protocols"):
        task.build_evaluator(model, meta, {"protocols": ["voc2012"]})
    with pytest.raises(UserError, match="no evaluator settings"):
        get_task("regression").build_evaluator(model, meta, {"x": 1})


def test_segmentation_predictions_round_trip_through_file_scoring(tmp_path):
    from zoo.metrics.files import evaluate_files

    task = get_task("segmentation")
    masks = torch.randint(0, 3, (3, 8, 8))
    batch = SegmentationBatch(torch.rand(3, 3, 8, 8), masks)
    logits = torch.nn.functional.one_hot(masks, 3).permute(0, 3, 1, 2).float()
    assert task.save_predictions(tmp_path / "pred", [(logits, batch)], {}) == 3
    assert task.save_predictions(tmp_path / "gt", [(masks, batch)], {}) == 3
    m = evaluate_files({"task": "segmentation", "gt": str(tmp_path / "gt"),
                        "predictions": str(tmp_path / "pred"), "num_classes": "3"})
    assert m["miou"] == pytest.approx(1.0) and m["num_images"] == 3
    ev = task.build_evaluator(None, {"num_classes": 3}, {"ignore_index": 0})
    ev.update(logits, batch)
    assert ev.compute()["num_pixels"] == int((masks != 0).sum())


def test_model_without_a_task_is_one_line():
    class Bare(torch.nn.Module):
        task = ""

    with pytest.raises(UserError, match="declares no task"):
        task_of(Bare())
    with pytest.raises(UserError, match="unknown task 'nope'"):
        get_task("nope")


def test_predict_on_a_missing_run_is_one_line(capsys):
    assert predict_main(["run=/no/such/run", "temperature=-1"]) == 2
    assert "run directory does not exist" in capsys.readouterr().err


def test_evaluate_run_takes_evaluator_settings_and_checks_the_output_form(train, tmp_path, capsys):
    import json

    run = tmp_path / "mlp"
    assert train("model=mlp", "data=digits", "trainer=debug", f"hydra.run.dir={run}") == 0
    assert evaluate_main([f"run={run}", "split=val", "evaluator.topk=[2,3]"]) == 0
    metrics = json.loads((run / "eval_val" / "metrics.json").read_text())
    assert {"top2_accuracy", "top3_accuracy"} <= set(metrics) and "top5_accuracy" not in metrics
    assert (run / "eval_val" / "confusion_matrix.png").is_file()
    capsys.readouterr()
    assert evaluate_main([f"run={run}", "evaluator.protocols=coco"]) == 2
    assert "unknown evaluator setting 'protocols' for task classification" in capsys.readouterr().err
    assert predict_main([f"run={run}", "images=a.png", "topk=0"]) == 2
    assert "topk must be >= 1, got 0" in capsys.readouterr().err


def test_tagger_predicts_one_tag_per_symbol(tmp_path, capsys):
    from zoo.data.seq_tasks import SeqTaskData
    from zoo.models.sequence.classifier import RecurrentTagger

    data = SeqTaskData(task="running_parity", train_size=4, val_size=4, test_size=4)
    model = RecurrentTagger(vocab_size=len(data.vocab), num_classes=2, hidden_size=8)
    written = get_task("tagging").predict(_Run(model, data), {"input": "0110"}, tmp_path)
    line = capsys.readouterr().out.strip()
    assert len(line.split()) == 4 and line.startswith("0:") and written == [tmp_path / "tags.txt"]
    with pytest.raises(UserError, match="vocabulary"):
        get_task("tagging").predict(_Run(model, data), {"input": "01x"}, None)
