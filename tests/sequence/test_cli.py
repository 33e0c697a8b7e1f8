"""The sequence models through the real entry points: train, then evaluate and predict
from the run directory alone."""

from __future__ import annotations

import json

import torch

from zoo.cli import evaluate_main, predict_main
from zoo.engine import checkpoint as C

TINY_GPT = ("model.n_layer=1", "model.n_embd=16", "model.n_head=2", "data.seq_len=16",
            "data.batch_size=8", "data.eval_batch_size=64")


def test_gpt_run_generates_and_evaluates(train, tmp_path, capsys):
    run = tmp_path / "gpt"
    assert train("model=gpt", "trainer=debug", *TINY_GPT, f"hydra.run.dir={run}") == 0
    capsys.readouterr()
    assert predict_main([f"run={run}", "prompt=class ", "max_new_tokens=12", "seed=0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("class ")
    assert evaluate_main([f"run={run}", "split=val"]) == 0
    metrics = json.loads(next(run.glob("eval_val*/metrics.json")).read_text())
    assert {"loss", "perplexity", "bits_per_char"} <= metrics.keys()
    # output= is a folder: each mode writes its named file there and says so
    out = tmp_path / "samples"
    assert predict_main([f"run={run}", "prompt=def ", "max_new_tokens=4", "seed=0", f"output={out}"]) == 0
    assert (out / "samples.txt").read_text().startswith("def ")
    assert f"wrote {out}/: samples.txt" in capsys.readouterr().out
    # a person's mistake is one line and exit status 2, found before the run is rebuilt
    for bad, message in [("temperature=hot", "temperature must be a number"),
                         ("temperature=-1", "temperature must be >= 0, got -1"),
                         ("max_new_tokens=1e8", "max_new_tokens must be >= 0 and <= 100000"),
                         ("top_k=0", "top_k must be >= 1"), ("colour=red", "unknown option 'colour'")]:
        assert predict_main([f"run={run}", bad]) == 2, bad
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_lstm_run_with_bpe_tokenizer(train, tmp_path, capsys):
    text = tmp_path / "book.txt"
    text.write_text("It was the best of times, it was the worst of times. " * 80)
    run = tmp_path / "lstm"
    assert train("model=lstm", "trainer=debug", "data=text_file", f"data.path={text}",
                 "data.tokenizer=bpe", "data.vocab_size=300", "data.seq_len=16",
                 "data.batch_size=4", "model.hidden_size=16", f"hydra.run.dir={run}") == 0
    text.unlink()  # the run directory alone is enough: the tokenizer is in the checkpoint
    capsys.readouterr()
    assert predict_main([f"run={run}", "prompt=It was", "max_new_tokens=5", "seed=0"]) == 0
    assert capsys.readouterr().out.startswith("It was")


def test_missing_text_file_is_one_line(train, tmp_path, capsys):
    assert train("model=gpt", "trainer=debug", "data=text_file",
                 f"data.path={tmp_path / 'nope.txt'}", f"hydra.run.dir={tmp_path / 'r'}") == 2
    captured = capsys.readouterr()
    assert "text file not found" in captured.out + captured.err
    assert train("model=gpt", "trainer=debug", "data=text_file",
                 f"hydra.run.dir={tmp_path / 'r2'}") == 2
    captured = capsys.readouterr()
    assert "data.path" in captured.out + captured.err


def test_bert_finetune_starts_from_pretrained_encoder(train, tmp_path, capsys):
    small = ("model.dim=16", "model.num_heads=2", "model.num_layers=1", "model.ff_dim=32",
             "data.seq_len=24", "data.batch_size=8", "data.eval_batch_size=64")
    pre = tmp_path / "bert"
    assert train("model=bert", "trainer=debug", *small, f"hydra.run.dir={pre}") == 0
    capsys.readouterr()
    ft = tmp_path / "ft"
    ckpt = pre / "checkpoints" / "best.pt"
    assert train("model=bert_finetune", "trainer=debug", "trainer.max_steps=1", *small,
                 f"init_from={ckpt}", f"hydra.run.dir={ft}") == 0
    out = capsys.readouterr().out
    assert "2 missing keys" in out  # only the new classifier head
    pre_w = C.load(ckpt)["model"]
    # the encoder was loaded (then trained one step): embeddings close to the pre-trained ones
    ft_w = C.load(ft / "checkpoints" / "last.pt")["model"]
    key = "bert.pos_emb.weight"
    assert torch.allclose(ft_w[key], pre_w[key], atol=1e-2)
    assert predict_main([f"run={pre}", "text=The ___ statement"]) == 0


def test_seq2seq_translates_from_run(train, tmp_path, capsys):
    run = tmp_path / "s2s"
    assert train("model=transformer", "trainer=debug", "model.dim=16", "model.ff_dim=32",
                 f"hydra.run.dir={run}") == 0
    capsys.readouterr()
    assert predict_main([f"run={run}", "input=4711", "beam_size=2", f"output={tmp_path / 'o'}"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert set(printed[0]) <= set("0123456789") and printed[1].endswith("translation.txt")
    assert (tmp_path / "o" / "translation.txt").read_text().strip() == printed[0]
    assert predict_main([f"run={run}", "input=4711", "beam_size=0"]) == 2


def test_word2vec_neighbours_and_export(train, tmp_path, capsys):
    run = tmp_path / "w2v"
    assert train("model=word2vec_skipgram", "trainer=debug", f"hydra.run.dir={run}") == 0
    capsys.readouterr()
    out = tmp_path / "vectors.txt"
    assert predict_main([f"run={run}", "word=c00_1", "k=3", f"export={out}"]) == 0
    assert capsys.readouterr().out.count("(") == 3
    lines = out.read_text().splitlines()
    assert lines[0] == "200 50" and len(lines) == 201 and len(lines[1].split()) == 51


def test_lstm_resume_from_mid_epoch_is_exact(train, tmp_path):
    """The hidden state carried between batches is part of last.pt: a run stopped
    mid-epoch and resumed ends with the same weights as an uninterrupted one."""
    text = tmp_path / "book.txt"
    text.write_text("It was the best of times, it was the worst of times. " * 40)
    common = ["model=lstm", "trainer.progress=false", "logger=none", "data=text_file",
              f"data.path={text}", "data.seq_len=16", "data.batch_size=4", "model.hidden_size=16",
              "model.embed_dim=8", "trainer.max_steps=12", "trainer.val_every=100",
              "trainer.ckpt_every=100"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert train(*common, f"hydra.run.dir={full}") == 0
    assert train(*common, f"hydra.run.dir={part}", "trainer.interrupt_at=5") == 0
    state = C.load(part / "checkpoints" / "last.pt")
    assert state["step"] == 5 and 0 < state["batch_in_epoch"]
    assert {"carry0", "carry1"} == set(state["model_state"])  # LSTM: (h, c)
    assert train(f"resume={part}") == 0
    a = C.load(full / "checkpoints" / "last.pt")["model"]
    b = C.load(part / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_captioning_prints_and_draws_captions(train, tmp_path, capsys):
    run = tmp_path / "cap"
    assert train("model=captioning_lstm", "trainer=debug", "data.num_train=32", "data.num_val=8",
                 "data.num_test=8", f"hydra.run.dir={run}") == 0
    capsys.readouterr()
    out = tmp_path / "o"
    assert predict_main([f"run={run}", "split=val", "index=1", "count=3", f"output={out}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("1: ") and "(true: " in lines[0] and len(lines) == 4
    assert lines[3] == f"wrote {out}/: captions.txt, captions.png"
    assert (out / "captions.txt").read_text().splitlines() == lines[:3]
    assert predict_main([f"run={run}", "index=100"]) == 2
    assert predict_main([f"run={run}", "split=nope"]) == 2
