"""Conversion between the zoo's ``deepseek`` model and transformers' ``DeepseekV3ForCausalLM``
(the reference implementation; ``transformers`` is needed only here).

The two compute the same function for a reference configuration with sigmoid scores,
default rotary embedding (no YaRN scaling), no attention biases and SiLU experts; the
reference has no multi-token-prediction modules, so a zoo model's MTP modules are not
exported and an imported model has ``mtp_depth=0``. Rotary layouts: a reference with
``rope_interleave=true`` rotates pairs (x[2j], x[2j+1]); the zoo rotates (x[j], x[j+r/2]),
so the rotary rows of the query and latent projections are permuted on import (the
export writes ``rope_interleave=false`` and needs no permutation).
"""

from __future__ import annotations

from typing import Any

import torch

from zoo.errors import UserError
from zoo.layers.mla import MultiHeadLatentAttention
from zoo.layers.rotary import interleaved_to_half

MODEL_TYPE = "deepseek_v3"


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise UserError("converting DeepSeek models needs the transformers package: "
                        "pip install transformers") from None
    return transformers


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    return getattr(cfg, name, default)


def config_from_reference(cfg: Any) -> dict[str, Any]:
    """A ``DeepseekV3Config`` -> keyword arguments of ``zoo.models.transformer.deepseek.DeepSeek``."""
    # transformers 5 keeps rope_type/rope_theta in rope_parameters, 4.x in rope_scaling/rope_theta
    rope = dict(_get(cfg, "rope_parameters") or _get(cfg, "rope_scaling") or {})
    rope.setdefault("rope_theta", _get(cfg, "rope_theta", 10000.0))
    rope.setdefault("rope_type", rope.get("type", "default"))
    if rope.get("rope_type", "default") != "default":
        raise UserError(f"rope_type '{rope['rope_type']}' is not supported; only the default rotary "
                        "embedding (no YaRN scaling) converts")
    if _get(cfg, "hidden_act", "silu") != "silu":
        raise UserError(f"hidden_act '{cfg.hidden_act}' is not supported; the experts are SiLU-gated")
    if _get(cfg, "attention_bias", False):
        raise UserError("attention_bias=true is not supported")
    n_layer = cfg.num_hidden_layers
    first_dense = min(int(_get(cfg, "first_k_dense_replace", 0) or 0), n_layer)
    n_groups = int(_get(cfg, "n_group", 1) or 1)
    return {
        "vocab_size": cfg.vocab_size, "block_size": cfg.max_position_embeddings, "n_layer": n_layer,
        "n_head": cfg.num_attention_heads, "n_embd": cfg.hidden_size, "attention": "mla",
        "ffn": "moe" if first_dense < n_layer else "dense",
        "kv_lora_rank": cfg.kv_lora_rank, "q_lora_rank": cfg.q_lora_rank, "qk_nope_dim": cfg.qk_nope_head_dim,
        "qk_rope_dim": cfg.qk_rope_head_dim, "v_head_dim": cfg.v_head_dim, "n_kv_head": None,
        "ffn_hidden": cfg.intermediate_size, "n_experts": cfg.n_routed_experts, "n_shared": cfg.n_shared_experts,
        "top_k": cfg.num_experts_per_tok, "expert_hidden": cfg.moe_intermediate_size,
        "first_k_dense": first_dense, "score": "sigmoid", "n_groups": n_groups,
        "topk_groups": int(_get(cfg, "topk_group", 1) or 1), "route_scale": float(cfg.routed_scaling_factor),
        "norm_topk": bool(cfg.norm_topk_prob), "balance": "bias", "mtp_depth": 0,
        "rope_base": float(rope.get("rope_theta", 10000.0)), "norm_eps": float(cfg.rms_norm_eps),
        "tie_embeddings": bool(_get(cfg, "tie_word_embeddings", False)), "dropout": 0.0}


def config_to_reference(model: Any) -> Any:
    """A zoo ``DeepSeek`` -> ``DeepseekV3Config`` (MTP modules are not part of it)."""
    hp = model.hparams
    if hp["attention"] != "mla":
        raise UserError("only model.attention=mla converts to DeepseekV3; this model uses "
                        f"{hp['attention']}")
    if hp["score"] != "sigmoid":
        raise UserError("DeepseekV3 routes with sigmoid scores; this model uses "
                        f"model.score={hp['score']}")
    if hp["n_shared"] < 1:
        raise UserError("DeepseekV3 always has shared experts; this model has model.n_shared=0")
    t = _transformers()
    n_layer = hp["n_layer"]
    first_dense = n_layer if hp["ffn"] == "dense" else min(hp["first_k_dense"], n_layer)
    return t.DeepseekV3Config(
        vocab_size=hp["vocab_size"], hidden_size=hp["n_embd"], intermediate_size=hp["ffn_hidden"],
        moe_intermediate_size=hp["expert_hidden"], num_hidden_layers=n_layer,
        num_attention_heads=hp["n_head"], num_key_value_heads=hp["n_head"],
        n_shared_experts=hp["n_shared"], n_routed_experts=hp["n_experts"],
        routed_scaling_factor=hp["route_scale"], kv_lora_rank=hp["kv_lora_rank"],
        q_lora_rank=hp["q_lora_rank"], qk_rope_head_dim=hp["qk_rope_dim"],
        v_head_dim=hp["v_head_dim"], qk_nope_head_dim=hp["qk_nope_dim"], n_group=hp["n_groups"],
        topk_group=hp["topk_groups"], num_experts_per_tok=hp["top_k"],
        first_k_dense_replace=first_dense, norm_topk_prob=hp["norm_topk"], hidden_act="silu",
        max_position_embeddings=hp["block_size"], rms_norm_eps=hp["norm_eps"],
        tie_word_embeddings=hp["tie_embeddings"], rope_interleave=False,
        rope_parameters={"rope_type": "default", "rope_theta": hp["rope_base"]},
        attention_bias=False, attention_dropout=0.0, num_nextn_predict_layers=0)


def _names(model: Any) -> list[tuple[str, str]]:
    """(zoo name, reference name) for every weight of a zoo DeepSeek (MTP excluded)."""
    pairs = [("tok_emb.weight", "model.embed_tokens.weight"), ("norm.weight", "model.norm.weight")]
    if not model.hparams["tie_embeddings"]:
        pairs.append(("lm_head.weight", "lm_head.weight"))
    for i, block in enumerate(model.blocks):
        z, r = f"blocks.{i}.", f"model.layers.{i}."
        pairs += [(z + "norm1.weight", r + "input_layernorm.weight"),
                  (z + "norm3.weight", r + "post_attention_layernorm.weight")]
        attn = {"kv_a_proj.weight": "kv_a_proj_with_mqa.weight", "kv_a_norm.weight": "kv_a_layernorm.weight",
                "kv_b_proj.weight": "kv_b_proj.weight", "o_proj.weight": "o_proj.weight"}
        if block.self_attn.q_lora_rank is None:
            attn["q_proj.weight"] = "q_proj.weight"
        else:
            attn.update({"q_a_proj.weight": "q_a_proj.weight", "q_a_norm.weight": "q_a_layernorm.weight",
                         "q_b_proj.weight": "q_b_proj.weight"})
        pairs += [(z + "self_attn." + a, r + "self_attn." + b) for a, b in attn.items()]
        if hasattr(block.ff, "gate_up_proj"):   # routed layer
            ff = {"gate.weight": "gate.weight", "expert_bias": "gate.e_score_correction_bias",
                  "gate_up_proj": "experts.gate_up_proj", "down_proj": "experts.down_proj"}
            ff.update({f"shared.{p}.weight": f"shared_experts.{p}.weight"
                       for p in ("gate_proj", "up_proj", "down_proj")})
        else:
            ff = {f"{p}.weight": f"{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")}
        pairs += [(z + "ff." + a, r + "mlp." + b) for a, b in ff.items()]
    return pairs


def _deinterleave(name: str, w: torch.Tensor, attn: MultiHeadLatentAttention) -> torch.Tensor:
    """Rows of an interleaved-rotary projection in the zoo's half-split order."""
    perm = interleaved_to_half(attn.rope)
    if name.endswith(("q_proj.weight", "q_b_proj.weight")):
        w = w.view(attn.num_heads, attn.nope + attn.rope, -1).clone()
        w[:, attn.nope:] = w[:, attn.nope + perm]
        return w.reshape(-1, w.shape[-1])
    if name.endswith("kv_a_proj.weight"):
        w = w.clone()
        w[attn.kv_lora_rank:] = w[attn.kv_lora_rank + perm]
    return w


def from_reference(ref: Any) -> Any:
    """``DeepseekV3ForCausalLM`` -> the equal zoo ``DeepSeek`` (float32, eval mode)."""
    from zoo.models.transformer.deepseek import DeepSeek

    cfg = ref.config
    if _get(cfg, "model_type") != MODEL_TYPE:
        raise UserError(f"expected a {MODEL_TYPE} model, got {_get(cfg, 'model_type')}")
    model = DeepSeek(**config_from_reference(cfg))
    src = {k: v.detach().float() for k, v in ref.state_dict().items()}
    dst = model.state_dict()
    interleave = bool(_get(cfg, "rope_interleave", False))
    for zoo_name, ref_name in _names(model):
        if ref_name not in src:
            raise UserError(f"the reference model has no weight {ref_name}")
        w = src[ref_name]
        if interleave and ".self_attn." in zoo_name:
            w = _deinterleave(zoo_name, w, model.blocks[int(zoo_name.split(".")[1])].self_attn)
        if tuple(w.shape) != tuple(dst[zoo_name].shape):
            raise UserError(f"{ref_name}: shape {tuple(w.shape)} does not fit {zoo_name} "
                            f"{tuple(dst[zoo_name].shape)}")
        dst[zoo_name] = w
    model.load_state_dict(dst)
    return model.eval()


def to_reference(model: Any) -> Any:
    """A zoo ``DeepSeek`` -> ``DeepseekV3ForCausalLM`` computing the same logits (MTP dropped)."""
    t = _transformers()
    ref = t.DeepseekV3ForCausalLM(config_to_reference(model))
    src = model.state_dict()
    state = {ref_name: src[zoo_name].detach().float().clone() for zoo_name, ref_name in _names(model)}
    if model.hparams["tie_embeddings"]:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing, unexpected = ref.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (model.hparams["tie_embeddings"] and k == "lm_head.weight")]
    if missing or unexpected:
        raise UserError(f"weights that do not map: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return ref.eval()
