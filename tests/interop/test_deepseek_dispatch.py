"""zoo.interop's dispatch to the DeepSeek family (``zoo.interop.deepseek``): a tiny random
``DeepseekV3ForCausalLM`` through ``from_transformers`` / ``to_transformers`` and a
``save_pretrained`` folder, then ``init_from=FOLDER`` with its tokenizer.json, sampling,
and ``format=hf`` back to a folder transformers loads."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("zoo.interop.deepseek")

from zoo.interop import from_transformers, to_transformers

TEXT = "it was the best of times, it was the worst of times. " * 80


def reference() -> transformers.DeepseekV3ForCausalLM:
    cfg = transformers.DeepseekV3Config(
        vocab_size=50, hidden_size=32, intermediate_size=48, moe_intermediate_size=12,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, n_shared_experts=1,
        n_routed_experts=8, routed_scaling_factor=2.5, kv_lora_rank=16, q_lora_rank=10,
        qk_rope_head_dim=8, v_head_dim=10, qk_nope_head_dim=12, n_group=4, topk_group=2,
        num_experts_per_tok=3, first_k_dense_replace=1, norm_topk_prob=True,
        max_position_embeddings=64, rms_norm_eps=1e-6, rope_interleave=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    torch.manual_seed(0)
    ref = transformers.DeepseekV3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return ref


def test_dispatch_by_model_type_and_by_class(tmp_path):
    ref = reference()
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(ids).logits
        model = from_transformers(ref)
        assert type(model).__module__.endswith(".deepseek")
        assert (model(ids) - want).abs().max() < 1e-4
        assert (to_transformers(model)(ids).logits - want).abs().max() < 1e-4
        ref.save_pretrained(tmp_path / "ds")
        assert (from_transformers(tmp_path / "ds")(ids) - want).abs().max() < 1e-4


@pytest.mark.slow
def test_init_from_deepseek_folder_trains_samples_and_exports(train, tmp_path, capsys):
    from zoo.cli import predict_main
    from zoo.data.tokenizers import CharTokenizer, tokenizer_json
    from zoo.export.__main__ import main as export_main

    folder = tmp_path / "ds"
    reference().save_pretrained(folder)
    (folder / "tokenizer.json").write_text(tokenizer_json(CharTokenizer.train(TEXT, 40)))
    book = tmp_path / "book.txt"
    book.write_text(TEXT)
    run = tmp_path / "run"
    assert train("model=deepseek", f"init_from={folder}", "data=text_file", f"data.path={book}",
                 "data.seq_len=16", "data.batch_size=4", "trainer=debug", "trainer.max_steps=1",
                 f"hydra.run.dir={run}") == 0
    assert "0 unexpected keys" in capsys.readouterr().out
    assert predict_main([f"run={run}", "prompt=it was", "max_new_tokens=5", "seed=0"]) == 0
    assert capsys.readouterr().out.startswith("it was")
    assert export_main([f"run={run}", "format=hf"]) == 0
    back = transformers.AutoModelForCausalLM.from_pretrained(str(run / "export" / "hf"))
    assert type(back).__name__ == "DeepseekV3ForCausalLM"
