"""``python -m zoo.export``: each format written from a real run directory and checked
independently of the exporter's own check (onnxruntime / torch.jit.load / transformers
against the PyTorch model on validation samples), ``predict.py backend=onnxruntime``,
and the one-line mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import one_line_error
from zoo.cli import predict_main, train_main
from zoo.export import ATOL, RTOL, ExportMismatch, load_safetensors
from zoo.export.__main__ import main as export_main

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("safetensors")


def close(a: np.ndarray, b: torch.Tensor) -> None:
    np.testing.assert_allclose(a, b.detach().numpy(), atol=ATOL, rtol=RTOL)


def train_run(config_dir: Path, where: Path, *overrides: str) -> Path:
    assert train_main([*overrides, "trainer=debug", "trainer.max_steps=1", "logger=none",
                       f"hydra.run.dir={where}"], config_dir=config_dir) == 0
    return where


def validation(run: Path, n: int = 4):
    from zoo.engine.run import load_run
    from zoo.export.onnx import validation_batch

    r = load_run(str(run), None, "cpu")
    r.model.eval()
    return r, validation_batch(r.data, n)


@pytest.fixture(scope="module")
def lenet(config_dir, tmp_path_factory):
    return train_run(config_dir, tmp_path_factory.mktemp("export") / "lenet", "model=lenet")


@pytest.fixture(scope="module")
def lenet_onnx(lenet):
    assert export_main([f"run={lenet}", "format=onnx"]) == 0
    return lenet / "export" / "model.onnx"


def test_onnx_classifier_matches_onnxruntime(lenet, lenet_onnx, capsys):
    meta = json.loads(lenet_onnx.with_name("model.onnx.json").read_text())
    assert meta["kind"] == "tensor" and meta["exporter"] == "dynamo"
    assert meta["check"]["max_abs_diff"] <= ATOL
    r, batch = validation(lenet, 8)
    session = ort.InferenceSession(str(lenet_onnx), providers=["CPUExecutionProvider"])
    x = batch[0]
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        close(got, r.model.predict(x))  # 8 rows: the batch dimension is dynamic


def test_predict_backend_onnxruntime_classifies_like_torch(lenet, lenet_onnx, tmp_path, capsys):
    from PIL import Image

    _, batch = validation(lenet, 2)
    paths = []
    for i, img in enumerate(batch[0]):
        p = tmp_path / f"{i}.png"
        Image.fromarray((img[0].clamp(0, 1) * 255).byte().numpy()).save(p)
        paths.append(str(p))
    capsys.readouterr()
    assert predict_main([f"run={lenet}", f"images={','.join(paths)}"]) == 0
    want = capsys.readouterr().out.splitlines()[: len(paths)]
    assert predict_main([f"run={lenet}", f"images={','.join(paths)}", "backend=onnxruntime"]) == 0
    got = capsys.readouterr().out.splitlines()[: len(paths)]
    # same top classes; probabilities printed to 3 digits agree
    assert got == want
    # no export at the given path: one line
    assert predict_main([f"run={lenet}", f"images={paths[0]}", "backend=onnxruntime",
                         f"onnx={tmp_path / 'none.onnx'}"]) == 2
    assert "no exported model at" in one_line_error(capsys)
    assert predict_main([f"run={lenet}", f"images={paths[0]}", "backend=tensorrt"]) == 2
    assert "backend" in one_line_error(capsys)


def test_torchscript_classifier(lenet, capsys):
    assert export_main([f"run={lenet}", "format=torchscript"]) == 0
    assert "torch.jit.load matches PyTorch" in capsys.readouterr().out
    r, batch = validation(lenet, 5)
    loaded = torch.jit.load(str(lenet / "export" / "model.pt"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch[0]), r.model.predict(batch[0]))


def test_safetensors_round_trip(lenet, tmp_path, capsys):
    out = tmp_path / "w" / "lenet.safetensors"
    assert export_main([f"run={lenet}", "format=safetensors", f"output={out}"]) == 0
    assert (out.parent / "config.yaml").is_file()
    model = load_safetensors(out)  # built from the config beside it
    r, batch = validation(lenet)
    with torch.no_grad():
        torch.testing.assert_close(model.predict(batch[0]), r.model.predict(batch[0]), atol=0, rtol=0)
    from safetensors.torch import load_file

    assert set(load_file(str(out))) == {k for k in r.model.state_dict() if not k.endswith("_extra_state")}


@pytest.fixture(scope="module")
def gpt(config_dir, tmp_path_factory):
    return train_run(config_dir, tmp_path_factory.mktemp("export") / "gpt", "model=gpt",
                     "model.n_layer=1", "model.n_embd=16", "model.n_head=2", "data.seq_len=16",
                     "data.batch_size=4", "data.eval_batch_size=8")


def test_safetensors_keeps_tied_weights_and_the_tokenizer(gpt, tmp_path):
    out = tmp_path / "gpt.safetensors"
    assert export_main([f"run={gpt}", "format=safetensors", f"output={out}"]) == 0
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert "lm_head.weight" not in list(f.keys())  # stored once, under tok_emb.weight
        assert json.loads(f.metadata()["aliases"]) == {"lm_head.weight": "tok_emb.weight"}
    model = load_safetensors(out)
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr() or torch.equal(
        model.lm_head.weight, model.tok_emb.weight)
    assert model.tokenizer_slot.spec["kind"] == "char"


def test_hf_export_loads_in_transformers(gpt, capsys):
    transformers = pytest.importorskip("transformers")
    assert export_main([f"run={gpt}", "format=hf"]) == 0
    folder = gpt / "export" / "hf"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    ref = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    r, batch = validation(gpt)
    with torch.no_grad():
        torch.testing.assert_close(ref(batch[0]).logits, r.model(batch[0]), atol=1e-5, rtol=0)
    # the character tokenizer went with it, with the same ids
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    text = "def f(x):\n    return x"
    assert tok.encode(text).ids == r.data.tokenizer.encode(text)


def test_hf_folder_starts_a_new_run(gpt, config_dir, tmp_path, capsys):
    """export format=hf, then init_from=that folder: the same model, trained on."""
    pytest.importorskip("transformers")
    folder = tmp_path / "hf"
    assert export_main([f"run={gpt}", "format=hf", f"output={folder}"]) == 0
    run = train_run(config_dir, tmp_path / "again", "model=gpt", f"init_from={folder}",
                    "data.seq_len=16", "data.batch_size=4", "optim.lr=0.0",
                    "optim.weight_decay=0.0")
    r0, batch = validation(gpt)
    r1, _ = validation(run)
    with torch.no_grad():
        torch.testing.assert_close(r1.model(batch[0]), r0.model(batch[0]), atol=1e-5, rtol=0)


def test_export_mistakes_are_one_line(lenet, tmp_path, capsys):
    assert export_main([f"run={tmp_path / 'nope'}", "format=onnx"]) == 2
    assert "run directory does not exist" in one_line_error(capsys)
    assert export_main([f"run={lenet}", "format=tflite"]) == 2
    assert "unknown format 'tflite'; valid: onnx, torchscript, safetensors, hf" in one_line_error(capsys)
    assert export_main([f"run={lenet}"]) == 2
    assert "give format=FORMAT" in one_line_error(capsys)
    assert export_main(["format=onnx"]) == 2
    assert "give run=DIR" in one_line_error(capsys)
    assert export_main([f"run={lenet}", "format=onnx", "colour=red"]) == 2
    assert "unknown option 'colour'" in one_line_error(capsys)
    assert export_main([f"run={lenet}", "format=hf"]) == 2
    assert "LeNet5 has no transformers counterpart" in one_line_error(capsys)
    assert export_main([]) == 2 and "usage: python -m zoo.export" in capsys.readouterr().out


def test_unexportable_family_is_one_line(config_dir, tmp_path, capsys):
    run = train_run(config_dir, tmp_path / "w2v", "model=word2vec_skipgram")
    capsys.readouterr()
    assert export_main([f"run={run}", "format=onnx"]) == 2
    assert "cannot be exported to a graph" in one_line_error(capsys)


def test_missing_optional_package_is_one_line(lenet, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    assert export_main([f"run={lenet}", "format=onnx"]) == 2
    assert 'pip install -e ".[export]"' in one_line_error(capsys)


def test_compare_refuses_a_difference_beyond_the_tolerance():
    from zoo.export.onnx import compare

    want = torch.tensor([1.0, 100.0])
    assert compare("y", want.numpy() + 1e-5, want) < 1e-4
    with pytest.raises(ExportMismatch, match="differs from PyTorch's by up to"):
        compare("y", want.numpy() + np.array([0.0, 0.2], dtype=np.float32), want)
    with pytest.raises(ExportMismatch, match="shape"):
        compare("y", want.numpy()[:1], want)


class TinySegmenter(nn.Module):
    """A stand-in for any task="segmentation" model: images (B, 3, H, W) -> (B, C, H, W)."""

    task = "segmentation"

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 4, 1))

    def predict(self, x):
        return nn.functional.interpolate(self.body(x[:, :, ::2, ::2]), size=x.shape[-2:],
                                         mode="bilinear", align_corners=False)


class TinySegData:
    splits = ("train", "val")

    def dataset(self, split):
        g = torch.Generator().manual_seed(0)
        return [(torch.rand(3, 32, 32, generator=g), torch.zeros(32, 32, dtype=torch.long))
                for _ in range(3)]

    @staticmethod
    def collate_fn(items):
        from zoo.data.batches import SegmentationBatch

        return SegmentationBatch(torch.stack([a for a, _ in items]), torch.stack([b for _, b in items]))


def test_segmenter_exports_to_onnx_and_torchscript(tmp_path, capsys):
    from zoo.export.onnx import export_onnx, export_torchscript

    torch.manual_seed(0)
    model = TinySegmenter().eval()
    data = TinySegData()
    with torch.no_grad():
        export_onnx(model, data, tmp_path / "seg.onnx")
        export_torchscript(model, data, tmp_path / "seg.pt")
    x = torch.rand(5, 3, 32, 32)
    s = ort.InferenceSession(str(tmp_path / "seg.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        close(s.run(None, {"input": x.numpy()})[0], model.predict(x))
        torch.testing.assert_close(torch.jit.load(str(tmp_path / "seg.pt"))(x), model.predict(x))
    meta = json.loads((tmp_path / "seg.onnx.json").read_text())
    assert meta["task"] == "segmentation" and meta["outputs"] == ["output"]


@pytest.mark.slow
def test_language_model_exports_with_dynamic_length(gpt):
    assert export_main([f"run={gpt}", "format=onnx"]) == 0
    r, _ = validation(gpt)
    s = ort.InferenceSession(str(gpt / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    ids = torch.randint(0, r.model.vocab_size, (3, 7))  # another batch size and length
    with torch.no_grad():
        close(s.run(None, {"input": ids.numpy()})[0], r.model(ids))
