"""model=deepseek through the real entry points: train a few steps, evaluate (expert load
in metrics.json), predict with speculative decoding; the switches build."""

from __future__ import annotations

import json

import pytest

from zoo.cli import evaluate_main, predict_main

TINY = ("model.n_layer=2", "model.n_embd=16", "model.n_head=2", "model.kv_lora_rank=8",
        "model.qk_nope_dim=4", "model.qk_rope_dim=4", "model.v_head_dim=4", "model.ffn_hidden=16",
        "model.expert_hidden=8", "model.n_experts=4", "data.seq_len=16", "data.batch_size=8",
        "data.eval_batch_size=64")


def test_deepseek_trains_evaluates_and_speculates(train, tmp_path, capsys):
    run = tmp_path / "ds"
    assert train("model=deepseek", "trainer=debug", *TINY, f"hydra.run.dir={run}") == 0
    capsys.readouterr()
    assert evaluate_main([f"run={run}", "split=val"]) == 0
    metrics = json.loads(next(run.glob("eval_val*/metrics.json")).read_text())
    assert {"loss", "bits_per_char", "expert_load_max_over_mean"} <= metrics.keys()
    assert metrics["expert_load_max_over_mean"] >= 1.0
    capsys.readouterr()
    assert predict_main([f"run={run}", "prompt=def ", "max_new_tokens=12", "speculative=true"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("def ") and "acceptance rate" in captured.err
    assert predict_main([f"run={run}", "speculative=true", "temperature=0.8"]) == 2
    assert "greedily" in capsys.readouterr().err


@pytest.mark.parametrize("switches", [("model.attention=mha", "model.ffn=dense", "model.mtp_depth=0"),
                                      ("model.balance=aux", "model.score=softmax", "model.mtp_depth=2")])
def test_deepseek_switches_train(train, tmp_path, switches, capsys):
    run = tmp_path / "ds"
    assert train("model=deepseek", "trainer=debug", *TINY, *switches, f"hydra.run.dir={run}") == 0
    if "model.mtp_depth=0" in switches:
        capsys.readouterr()
        assert predict_main([f"run={run}", "speculative=true", "max_new_tokens=3"]) == 2
        assert "mtp_depth=0" in capsys.readouterr().err


def test_a_bad_switch_is_one_line(train, tmp_path, capsys):
    assert train("model=deepseek", "trainer=debug", *TINY, "model.attention=gqa",
                 f"hydra.run.dir={tmp_path / 'r'}") == 2
    captured = capsys.readouterr()
    assert "model.attention must be one of" in captured.out + captured.err
