"""GPT-2 <-> model=gpt, proved against transformers' GPT2LMHeadModel; a save_pretrained
folder fine-tuned with train.py init_from=FOLDER and sampled with predict.py through its
own tokenizer.json (a tiny one, trained here with the tokenizers library)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import one_line_error
from zoo.cli import predict_main
from zoo.engine import checkpoint as C
from zoo.errors import UserError
from zoo.interop import from_transformers, to_transformers
from zoo.models.transformer.gpt import GPT

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")
from transformers import GPT2Config, GPT2LMHeadModel

TINY = {"vocab_size": 300, "n_positions": 32, "n_embd": 16, "n_layer": 2, "n_head": 2,
        "bos_token_id": 0, "eos_token_id": 0}


def reference(**kw) -> GPT2LMHeadModel:
    """A random GPT-2 whose weights (norms and biases too) are far from their init, so a
    wrong transpose, split or activation shows in the logits."""
    torch.manual_seed(0)
    ref = GPT2LMHeadModel(GPT2Config(**{**TINY, **kw})).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.3)
    return ref


def logits_ref(ref, ids):
    with torch.no_grad():
        return ref(ids).logits


@pytest.mark.parametrize("kw", [{}, {"activation_function": "gelu", "layer_norm_epsilon": 0.05},
                                {"n_inner": 24, "tie_word_embeddings": False}])
def test_from_transformers_equals_gpt2(kw):
    ref = reference(**kw)
    if not ref.config.tie_word_embeddings:  # an untied head differs from the embedding
        assert not torch.equal(ref.lm_head.weight, ref.transformer.wte.weight)
    model = from_transformers(ref)
    assert isinstance(model, GPT)
    ids = torch.randint(0, TINY["vocab_size"], (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(ids)
    torch.testing.assert_close(got, logits_ref(ref, ids), atol=1e-5, rtol=0)


def test_to_transformers_equals_gpt():
    torch.manual_seed(0)
    for act, eps in (("gelu", 1e-5), ("gelu_tanh", 0.05)):
        model = GPT(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16,
                    activation=act, norm_eps=eps).eval()
        with torch.no_grad():  # far from the init, so every mapped number matters
            for p in model.parameters():
                p.normal_(0.0, 0.3)
        ref = to_transformers(model)
        ids = torch.randint(0, 50, (2, 16))
        with torch.no_grad():
            torch.testing.assert_close(logits_ref(ref, ids), model(ids), atol=1e-5, rtol=0)


def test_tanh_gelu_is_not_the_erf_one():
    """The activation option matters: loading GPT-2 with the erf GELU is measurably off."""
    ref = reference()
    model = from_transformers(ref)
    ids = torch.randint(0, TINY["vocab_size"], (2, 32))
    for block in model.blocks:
        block.ff.net[1] = torch.nn.GELU()
    with torch.no_grad():
        assert (model(ids) - logits_ref(ref, ids)).abs().max() > 1e-5


def test_unsupported_gpt2_settings_are_one_line():
    with pytest.raises(UserError, match="scale_attn_by_inverse_layer_idx"):
        from_transformers(reference(scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(UserError, match="activation_function 'relu'"):
        from_transformers(reference(activation_function="relu"))
    with pytest.raises(UserError, match="no transformers counterpart"):
        to_transformers(torch.nn.Linear(2, 2))


def tiny_tokenizer(path, text):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TINY["vocab_size"], special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text], trainer)
    tok.save(str(path))
    return tok


TEXT = "It was the best of times, it was the worst of times, it was the age of wisdom. " * 60


@pytest.fixture
def gpt2_folder(tmp_path):
    folder = tmp_path / "gpt2"
    ref = reference()
    ref.save_pretrained(folder)
    tiny_tokenizer(folder / "tokenizer.json", TEXT)
    assert (folder / "model.safetensors").is_file()
    return folder, ref


def test_from_folder_equals_reference(gpt2_folder):
    folder, ref = gpt2_folder
    model = from_transformers(folder)
    ids = torch.randint(0, TINY["vocab_size"], (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), logits_ref(ref, ids), atol=1e-5, rtol=0)


def test_init_from_folder_trains_and_samples_with_its_tokenizer(train, gpt2_folder, tmp_path, capsys):
    folder, ref = gpt2_folder
    book = tmp_path / "book.txt"
    book.write_text(TEXT)
    run = tmp_path / "ft"
    assert train("model=gpt", f"init_from={folder}", "data=text_file", f"data.path={book}",
                 "data.seq_len=16", "data.batch_size=4", "trainer=debug", "trainer.max_steps=1",
                 "optim.lr=0.0", "optim.weight_decay=0.0", f"hydra.run.dir={run}") == 0
    out = capsys.readouterr().out
    assert "model settings from its config.json" in out
    assert f"init_from {folder}:" in out and "0 missing keys" in out
    cfg = (run / "config.yaml").read_text()
    assert "activation: gelu_tanh" in cfg and "tokenizer.json" in cfg
    # lr 0: the run's weights are the folder's, and its model equals GPT-2's
    from zoo.engine.run import load_run

    r = load_run(str(run), None, "cpu")
    ids = torch.randint(0, TINY["vocab_size"], (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(r.model(ids), logits_ref(ref, ids), atol=1e-5, rtol=0)
    # the checkpoint keeps the tokenizer.json: sampling works without the folder
    import shutil

    shutil.rmtree(folder)
    spec = r.model.tokenizer_slot.spec
    assert spec["kind"] == "json"
    assert predict_main([f"run={run}", "prompt=It was the", "max_new_tokens=5", "seed=0"]) == 0
    assert capsys.readouterr().out.startswith("It was the")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 1


def test_tokenizer_json_encodes_like_the_library(gpt2_folder):
    from tokenizers import Tokenizer

    from zoo.data.tokenizers import build_tokenizer, tokenizer_from_spec

    folder, _ = gpt2_folder
    lib = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok = build_tokenizer(str(folder / "tokenizer.json"), "", TINY["vocab_size"])
    text = "it was the age of foolishness, ünïcode\n"
    assert tok.encode(text) == lib.encode(text).ids
    assert tok.decode(tok.encode(text)) == text
    again = tokenizer_from_spec(tok.spec())
    assert again.encode(text) == tok.encode(text)
    lengths = tok.token_lengths(TINY["vocab_size"])
    assert sum(lengths[i] for i in tok.encode(text)) == len(text.encode("utf-8"))
    with pytest.raises(UserError, match=r"has \d+ ids but data.vocab_size=100; set data.vocab_size="):
        build_tokenizer(str(folder / "tokenizer.json"), "", 100)


def test_init_from_folder_mistakes_are_one_line(train, gpt2_folder, tmp_path, capsys):
    folder, _ = gpt2_folder
    assert train("model=lstm", f"init_from={folder}", "trainer=debug",
                 f"hydra.run.dir={tmp_path / 'a'}") == 2
    assert "train it with model=gpt" in one_line_error(capsys)
    (folder / "tokenizer.json").unlink()
    assert train("model=gpt", f"init_from={folder}", "trainer=debug",
                 f"hydra.run.dir={tmp_path / 'b'}") == 2
    assert "has no tokenizer.json" in one_line_error(capsys)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "bloom"
    (folder / "config.json").write_text(json.dumps(cfg))
    assert train("model=gpt", f"init_from={folder}", "trainer=debug",
                 f"hydra.run.dir={tmp_path / 'c'}") == 2
    assert "no zoo model for transformers model_type 'bloom'" in one_line_error(capsys)


def test_old_gpt_checkpoints_still_load(train, tmp_path):
    """A GPT's state-dict keys do not change with the new options (old runs still load)."""
    a = GPT(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)
    b = GPT(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8, activation="gelu_tanh")
    assert list(a.state_dict()) == list(b.state_dict())
    C.load_model_state(b, a.state_dict(), "a")


def test_missing_transformers_is_one_line(monkeypatch):
    import sys

    model = GPT(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(UserError, match=r'pip install -e "\.\[hf\]"'):
        to_transformers(model)
