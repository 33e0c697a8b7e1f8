"""The reference is the proof: a tiny random transformers ``DeepseekV3ForCausalLM`` (group
routing, sigmoid scores, leading dense layers, with and without low-rank queries,
interleaved or half-split rotary layout, a non-zero balancing bias) converted to the zoo's
``deepseek`` and back gives the same logits to 1e-4 in float32."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from zoo.errors import UserError
from zoo.interop.deepseek import config_to_reference, from_reference, to_reference
from zoo.models.transformer.deepseek import DeepSeek


def _reference(q_lora_rank, interleave, tie=False):
    cfg = transformers.DeepseekV3Config(
        vocab_size=50, hidden_size=32, intermediate_size=48, moe_intermediate_size=12,
        num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2, n_shared_experts=1,
        n_routed_experts=8, routed_scaling_factor=2.5, kv_lora_rank=16, q_lora_rank=q_lora_rank,
        qk_rope_head_dim=8, v_head_dim=10, qk_nope_head_dim=12, n_group=4, topk_group=2,
        num_experts_per_tok=3, first_k_dense_replace=1, norm_topk_prob=True,
        max_position_embeddings=64, rms_norm_eps=1e-6, rope_interleave=interleave,
        tie_word_embeddings=tie, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    torch.manual_seed(0)
    ref = transformers.DeepseekV3ForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():   # move every weight (norm gains, router, bias) off its init
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for layer in ref.model.layers[1:]:
            layer.mlp.gate.e_score_correction_bias.copy_(torch.randn(8, generator=g) * 0.1)
    return ref


@pytest.mark.parametrize("q_lora_rank", [None, 10])
@pytest.mark.parametrize("interleave", [True, False])
def test_reference_logits_equal_both_ways(q_lora_rank, interleave):
    ref = _reference(q_lora_rank, interleave)
    ids = torch.randint(0, 50, (2, 17), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = ref(ids).logits
        zoo = from_reference(ref)
        assert isinstance(zoo, DeepSeek) and zoo.hparams["mtp_depth"] == 0
        assert (zoo(ids) - expected).abs().max() < 1e-4
        back = to_reference(zoo)
        assert (back(ids).logits - expected).abs().max() < 1e-4
        # the cached, weight-absorbed decoding path agrees as well
        caches = [{} for _ in zoo.blocks]
        steps = torch.cat([zoo(ids[:, t: t + 1], caches) for t in range(ids.shape[1])], dim=1)
        assert (steps - expected).abs().max() < 1e-4


def test_a_trained_style_zoo_model_exports_and_drops_mtp():
    torch.manual_seed(0)
    zoo = DeepSeek(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=32, kv_lora_rank=8,
                   qk_nope_dim=8, qk_rope_dim=4, v_head_dim=8, ffn_hidden=32, n_experts=4,
                   expert_hidden=8, n_groups=2, topk_groups=1, mtp_depth=1).eval()
    with torch.no_grad():
        zoo.moe_layers()[1].expert_bias.copy_(torch.tensor([0.3, -0.1, 0.0, -0.2]))
    ids = torch.randint(0, 40, (1, 12))
    ref = to_reference(zoo)
    assert ref.config.tie_word_embeddings
    with torch.no_grad():
        assert (ref(ids).logits - zoo(ids)).abs().max() < 1e-4
        assert torch.equal(from_reference(ref).moe_layers()[1].expert_bias, zoo.moe_layers()[1].expert_bias)


def test_what_the_reference_cannot_hold_is_one_line():
    for kw in ({"attention": "mha"}, {"score": "softmax"}, {"n_shared": 0}):
        with pytest.raises(UserError):
            config_to_reference(DeepSeek(vocab_size=20, n_layer=2, **kw))
