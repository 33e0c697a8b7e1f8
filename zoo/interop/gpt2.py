"""GPT-2 checkpoints <-> ``model=gpt`` (:class:`zoo.models.transformer.gpt.GPT`).

The two hold the same numbers under other names and layouts:

==========================================  ==========================================
transformers ``GPT2LMHeadModel``            zoo ``GPT``
==========================================  ==========================================
``transformer.wte`` / ``wpe``               ``tok_emb`` / ``pos_emb``
``h.i.ln_1`` / ``ln_2``                     ``blocks.i.norm1`` / ``norm3`` (pre-norm)
``h.i.attn.c_attn`` (Conv1D, (D, 3D))       ``blocks.i.self_attn.{q,k,v}_proj`` (Linear)
``h.i.attn.c_proj`` (Conv1D, (D, D))        ``blocks.i.self_attn.out_proj``
``h.i.mlp.c_fc`` / ``c_proj`` (Conv1D)      ``blocks.i.ff.net.0`` / ``ff.net.3``
``transformer.ln_f``, ``lm_head``           ``ln_f``, ``lm_head`` (tied to the embedding)
==========================================  ==========================================

GPT-2's ``Conv1D`` computes ``x @ W + b`` with ``W`` (in, out), the transpose of a
``Linear`` weight. Reading a folder needs only ``safetensors`` (its ``config.json`` is
plain JSON); building or writing the reference model needs ``transformers``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from zoo.errors import UserError

# transformers' activation names -> the GPT's ``activation``
_ACT_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": None,
                "gelu": "gelu"}
_ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
WEIGHTS = "model.safetensors"


def model_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The GPT's constructor keys for a GPT-2 ``config.json`` (a dict); what the zoo model
    cannot reproduce exactly is a one-line UserError."""
    act = config.get("activation_function", "gelu_new")
    if _ACT_FROM_HF.get(act) is None:
        raise UserError(f"GPT-2 activation_function '{act}' has no exact counterpart in "
                        f"model=gpt (supported: gelu_new, gelu_pytorch_tanh, gelu)")
    for flag, wanted in (("scale_attn_by_inverse_layer_idx", False),
                         ("reorder_and_upcast_attn", False), ("add_cross_attention", False),
                         ("scale_attn_weights", True)):
        if bool(config.get(flag, wanted)) != wanted:
            raise UserError(f"GPT-2 config sets {flag}={config.get(flag)}; model=gpt "
                            f"reproduces only {flag}={wanted}")
    n_embd = int(config["n_embd"])
    return {
        "vocab_size": int(config["vocab_size"]),
        "block_size": int(config["n_positions"]),
        "n_layer": int(config["n_layer"]),
        "n_head": int(config["n_head"]),
        "n_embd": n_embd,
        "bias": True,
        "activation": _ACT_FROM_HF[act],
        "norm_eps": float(config.get("layer_norm_epsilon", 1e-5)),
        "ff_dim": int(config.get("n_inner") or 4 * n_embd),
        "tie_embeddings": bool(config.get("tie_word_embeddings", True)),
    }


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the ``transformer.`` prefix (GPT2Model checkpoints, such as the
    published ``gpt2`` files, have none; GPT2LMHeadModel's have it)."""
    return {k.removeprefix("transformer."): v for k, v in state.items()}


def state_from_hf(state: dict[str, torch.Tensor], n_layer: int, tied: bool = True
                  ) -> dict[str, torch.Tensor]:
    """A GPT-2 state dict -> the zoo GPT's (weights only; the tokenizer slot is separate)."""
    s = _strip(state)
    need = ["wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"]
    missing = [k for k in need if k not in s]
    if missing:
        raise UserError(f"not a GPT-2 state dict: no {', '.join(missing)}")
    out = {"tok_emb.weight": s["wte.weight"], "pos_emb.weight": s["wpe.weight"],
           "ln_f.weight": s["ln_f.weight"], "ln_f.bias": s["ln_f.bias"]}
    for i in range(n_layer):
        h, b = f"h.{i}.", f"blocks.{i}."
        w_qkv, b_qkv = s[h + "attn.c_attn.weight"], s[h + "attn.c_attn.bias"]    # (D, 3D), (3D,)
        for name, w, bias in zip("qkv", w_qkv.chunk(3, dim=1), b_qkv.chunk(3)):
            out[f"{b}self_attn.{name}_proj.weight"] = w.t().contiguous()
            out[f"{b}self_attn.{name}_proj.bias"] = bias
        out[b + "self_attn.out_proj.weight"] = s[h + "attn.c_proj.weight"].t().contiguous()
        out[b + "self_attn.out_proj.bias"] = s[h + "attn.c_proj.bias"]
        for ln, norm in (("ln_1", "norm1"), ("ln_2", "norm3")):
            out[f"{b}{norm}.weight"], out[f"{b}{norm}.bias"] = s[f"{h}{ln}.weight"], s[f"{h}{ln}.bias"]
        for conv, lin in (("c_fc", "ff.net.0"), ("c_proj", "ff.net.3")):
            out[f"{b}{lin}.weight"] = s[f"{h}mlp.{conv}.weight"].t().contiguous()
            out[f"{b}{lin}.bias"] = s[f"{h}mlp.{conv}.bias"]
    if tied:
        out["lm_head.weight"] = out["tok_emb.weight"]
    elif "lm_head.weight" in state:
        out["lm_head.weight"] = state["lm_head.weight"]
    else:
        raise UserError("the GPT-2 config unties the output layer but the weights hold no lm_head.weight")
    return out


def state_to_hf(state: dict[str, torch.Tensor], n_layer: int, tied: bool = True
                ) -> dict[str, torch.Tensor]:
    """The zoo GPT's state dict -> GPT2LMHeadModel's (``transformer.`` keys + lm_head)."""
    t = "transformer."
    out = {t + "wte.weight": state["tok_emb.weight"], t + "wpe.weight": state["pos_emb.weight"],
           t + "ln_f.weight": state["ln_f.weight"], t + "ln_f.bias": state["ln_f.bias"]}
    for i in range(n_layer):
        h, b = f"{t}h.{i}.", f"blocks.{i}."
        a = b + "self_attn."
        out[h + "attn.c_attn.weight"] = torch.cat(
            [state[f"{a}{n}_proj.weight"].t() for n in "qkv"], dim=1).contiguous()   # (D, 3D)
        out[h + "attn.c_attn.bias"] = torch.cat([state[f"{a}{n}_proj.bias"] for n in "qkv"])
        out[h + "attn.c_proj.weight"] = state[a + "out_proj.weight"].t().contiguous()
        out[h + "attn.c_proj.bias"] = state[a + "out_proj.bias"]
        for ln, norm in (("ln_1", "norm1"), ("ln_2", "norm3")):
            out[f"{h}{ln}.weight"], out[f"{h}{ln}.bias"] = state[f"{b}{norm}.weight"], state[f"{b}{norm}.bias"]
        for conv, lin in (("c_fc", "ff.net.0"), ("c_proj", "ff.net.3")):
            out[f"{h}mlp.{conv}.weight"] = state[f"{b}{lin}.weight"].t().contiguous()
            out[f"{h}mlp.{conv}.bias"] = state[f"{b}{lin}.bias"]
    out["lm_head.weight"] = out[t + "wte.weight"] if tied else state["lm_head.weight"]
    return out


def hf_config_dict(model: Any) -> dict[str, Any]:
    """GPT2Config keyword arguments that describe the zoo ``model``."""
    attn = model.blocks[0].self_attn
    if attn.q_proj.bias is None:
        raise UserError("a GPT built with bias=false has no GPT-2 counterpart (GPT-2's "
                        "attention has biases)")
    drop = float(model.drop.p)
    return {
        "vocab_size": model.vocab_size, "n_positions": model.block_size,
        "n_embd": model.tok_emb.embedding_dim, "n_layer": len(model.blocks),
        "n_head": attn.num_heads, "n_inner": model.blocks[0].ff.net[0].out_features,
        "activation_function": _ACT_TO_HF[model.activation],
        "layer_norm_epsilon": model.norm_eps, "tie_word_embeddings": model.tie_embeddings,
        "resid_pdrop": drop, "embd_pdrop": drop, "attn_pdrop": drop,
        # the zoo's tokenizers have no begin/end-of-text ids that GPT-2's defaults (50256) name
        "bos_token_id": None, "eos_token_id": None,
    }


def _weights(model: Any) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.endswith("_extra_state")}


def from_config_and_state(config: dict[str, Any], state: dict[str, torch.Tensor]) -> Any:
    from zoo.models.transformer.gpt import GPT

    kw = model_kwargs(config)
    model = GPT(**kw)
    mapped = state_from_hf(state, kw["n_layer"], kw["tie_embeddings"])
    model.load_state_dict(mapped, strict=False)
    left = set(_weights(model)) - set(mapped)
    if left:
        raise UserError(f"GPT-2 weights lack {', '.join(sorted(left)[:3])}")
    return model.eval()


def from_reference(ref: Any) -> Any:
    """``GPT2LMHeadModel`` -> an equal zoo ``GPT`` (eval mode)."""
    return from_config_and_state(ref.config.to_dict(), ref.state_dict())


def to_reference(model: Any) -> Any:
    """A zoo ``GPT`` -> an equal ``GPT2LMHeadModel`` (eval mode)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    ref = GPT2LMHeadModel(GPT2Config(**hf_config_dict(model)))
    state = state_to_hf(_weights(model), len(model.blocks), model.tie_embeddings)
    missing, unexpected = ref.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("attn.bias") and k != "lm_head.weight"]
    if missing or unexpected:
        raise UserError(f"GPT -> GPT2LMHeadModel left {missing + unexpected}")
    return ref.eval()


def read_folder_state(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``folder/model.safetensors`` (or ``pytorch_model.bin``)."""
    st, pt = folder / WEIGHTS, folder / "pytorch_model.bin"
    if st.is_file():
        from zoo.interop import require

        require("safetensors", "hf")
        from safetensors.torch import load_file

        return load_file(str(st))
    if pt.is_file():
        return torch.load(pt, map_location="cpu", weights_only=True)
    raise UserError(f"{folder} holds no {WEIGHTS} (or pytorch_model.bin) beside its config.json")


def from_folder(folder: Path, config: dict[str, Any] | None = None) -> Any:
    """A ``save_pretrained`` folder (``config.json`` + ``model.safetensors``) -> zoo GPT."""
    if config is None:
        config = json.loads((folder / "config.json").read_text())
    return from_config_and_state(config, read_folder_state(folder))
