"""DeepSeek parts proved: absorbed MLA equals naive MLA, cached decoding and chunked
prefill equal a full forward, the cache holds exactly the latent and the rotary key,
vectorised MoE dispatch equals the dense one-hot reference, the balancing bias selects
but never weighs nor learns, and self-speculative decoding equals greedy decoding."""

from __future__ import annotations

import pytest
import torch

from zoo.errors import UserError
from zoo.layers.attention import causal_mask
from zoo.layers.mla import MultiHeadLatentAttention, RotaryAttention, cache_length
from zoo.layers.moe import MoE
from zoo.models.transformer.deepseek import DeepSeek

V = 40


def _model(**kw) -> DeepSeek:
    torch.manual_seed(0)
    args = {"vocab_size": V, "block_size": 24, "n_layer": 3, "n_head": 2, "n_embd": 32, "kv_lora_rank": 12,
                "qk_nope_dim": 8, "qk_rope_dim": 4, "v_head_dim": 8, "ffn_hidden": 48, "n_experts": 4, "top_k": 2,
                "expert_hidden": 16, "mtp_depth": 1}
    args.update(kw)
    return DeepSeek(**args)


def _randomise(model: torch.nn.Module) -> None:
    """Weights far from their init (norm gains, router), so no path is trivially equal."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)


@pytest.mark.parametrize("q_lora_rank", [None, 6])
def test_absorbed_mla_equals_naive_float64(q_lora_rank):
    torch.manual_seed(0)
    attn = MultiHeadLatentAttention(16, 2, 8, 4, 4, 6, q_lora_rank=q_lora_rank).double()
    _randomise(attn)
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    mask = causal_mask(7, 7)
    naive = attn(x, mask=mask, absorb="naive")
    absorbed = attn(x, mask=mask, absorb="absorbed")
    assert (naive - absorbed).abs().max() < 1e-10
    # and from a cache: a 4-token prefix, then 3 tokens
    c1, c2 = {}, {}
    attn(x[:, :4], mask=causal_mask(4, 4), cache=c1, absorb="naive")
    attn(x[:, :4], mask=causal_mask(4, 4), cache=c2, absorb="absorbed")
    a = attn(x[:, 4:], mask=causal_mask(3, 7), cache=c1, absorb="naive")
    b = attn(x[:, 4:], mask=causal_mask(3, 7), cache=c2, absorb="absorbed")
    assert (a - b).abs().max() < 1e-10 and (a - naive[:, 4:]).abs().max() < 1e-10


@pytest.mark.parametrize("attention", ["mla", "mha"])
def test_cached_decoding_equals_full_forward_at_every_position(attention):
    model = _model(attention=attention, n_kv_head=1).double().eval()
    _randomise(model)
    ids = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(0))
    full = model(ids)
    caches = [{} for _ in model.blocks]
    steps = [model(ids[:, t: t + 1], caches) for t in range(ids.shape[1])]
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-10


@pytest.mark.parametrize("chunks", [(5, 5, 10), (1, 12, 7), (20,)])
def test_chunked_prefill_equals_one_shot(chunks):
    model = _model().double().eval()
    _randomise(model)
    ids = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(2))
    full = model(ids)
    caches, outs, start = [{} for _ in model.blocks], [], 0
    for n in chunks:
        outs.append(model(ids[:, start: start + n], caches))
        start += n
    assert (torch.cat(outs, dim=1) - full).abs().max() < 1e-10


def test_a_chunk_needs_the_offset_mask():
    """The (chunk, start + chunk) mask is what makes a later chunk right: the square mask
    of the chunk alone gives different outputs (and the prefix-only mask would hide
    the chunk's own earlier tokens)."""
    torch.manual_seed(0)
    attn = MultiHeadLatentAttention(16, 2, 8, 4, 4, 6).double().eval()
    x = torch.randn(1, 9, 16, dtype=torch.float64)
    ref = attn(x, mask=causal_mask(9, 9))[:, 5:]
    cache: dict = {}
    attn(x[:, :5], mask=causal_mask(5, 5), cache=cache)
    good = attn(x[:, 5:], mask=causal_mask(4, 9), cache=dict(cache))
    assert (good - ref).abs().max() < 1e-10
    wrong = causal_mask(4, 4)   # ignores the cached prefix entirely: broadcast fails or differs
    with pytest.raises(RuntimeError):
        attn(x[:, 5:], mask=wrong, cache=dict(cache))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cache_bytes_per_token_are_the_latent_and_the_rotary_key(dtype):
    model = _model().to(dtype).eval()
    caches = [{} for _ in model.blocks]
    T = 11
    model(torch.randint(0, V, (1, T)), caches)
    stored = sum(t.numel() * t.element_size() for c in caches for t in c.values()) / T
    size = torch.empty((), dtype=dtype).element_size()
    assert stored == 3 * (12 + 4) * size == model.cache_bytes_per_token(dtype)
    assert set(caches[0]) == {"c_kv", "k_rope"} and cache_length(caches[0]) == T
    mha = _model(attention="mha").to(dtype)
    assert mha.cache_bytes_per_token(dtype) == 3 * 2 * 32 * size
    assert RotaryAttention(32, 4, 1).cache_bytes_per_token(dtype) == 2 * 8 * size


def test_default_config_caches_at_most_an_eighth_of_mha_and_matches_the_class_defaults():
    """The shipped model=deepseek sizes: MLA's cache is <= 1/8 of rotary MHA's at the same
    width and depth, and the yaml and the constructor agree on the MLA split."""
    import inspect
    from pathlib import Path

    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "zoo/configs/model/deepseek.yaml").read_text())
    model_cfg = {k: v for k, v in cfg["model"].items() if k not in ("_target_", "vocab_size", "block_size")}
    mla = DeepSeek(vocab_size=V, block_size=cfg["data"]["seq_len"], **model_cfg)
    mha = DeepSeek(vocab_size=V, block_size=cfg["data"]["seq_len"], **{**model_cfg, "attention": "mha"})
    assert model_cfg["attention"] == "mla"
    assert 8 * mla.cache_bytes_per_token() <= mha.cache_bytes_per_token()
    defaults = inspect.signature(DeepSeek).parameters
    for key in ("n_layer", "n_head", "n_embd", "kv_lora_rank", "qk_rope_dim", "qk_nope_dim", "v_head_dim"):
        assert defaults[key].default == model_cfg[key], key


@pytest.mark.parametrize("kw", [{"score": "sigmoid", "num_groups": 4, "topk_groups": 2, "route_scale": 2.5},
                                {"score": "softmax", "norm_topk": False, "num_shared": 2},
                                {"score": "sigmoid", "top_k": 1, "num_shared": 0}])
def test_vectorised_moe_equals_dense_reference(kw):
    torch.manual_seed(0)
    moe = MoE(12, 10, 8, kw.pop("top_k", 3), **kw).double()
    x = torch.randn(3, 9, 12, dtype=torch.float64, requires_grad=True)
    a = moe(x)
    ga = torch.autograd.grad(a.square().sum(), [x, *moe.parameters()])
    b = moe(x, dense=True)
    gb = torch.autograd.grad(b.square().sum(), [x, *moe.parameters()])
    assert (a - b).abs().max() < 1e-12
    for u, v in zip(ga, gb):
        assert (u - v).abs().max() < 1e-12
    assert moe.last_load.sum() == 27 * moe.top_k


def test_group_limited_routing_keeps_the_best_groups():
    moe = MoE(4, 4, 8, 2, num_groups=4, topk_groups=1)
    with torch.no_grad():
        moe.gate.weight.zero_()
        moe.expert_bias.copy_(torch.tensor([0.0, 0.0, 0.3, 0.0, 0.2, 0.25, 0.0, 0.0]))
    # group scores (top-2 sums): g0 = 0, g1 = 0.3, g2 = 0.45, g3 = 0: only group 2 competes,
    # though expert 2 alone has the highest biased score
    _w, experts, _ = moe.route(torch.randn(5, 4))
    assert set(experts.flatten().tolist()) == {4, 5}


def test_bias_selects_but_never_weighs_nor_learns():
    torch.manual_seed(0)
    moe = MoE(8, 6, 4, 2)
    assert "expert_bias" not in dict(moe.named_parameters())
    assert "expert_bias" in moe.state_dict() and not moe.expert_bias.requires_grad
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        moe.expert_bias[3] = 1e6
    weights, experts, _ = moe.route(x.view(-1, 8))
    assert (experts == 3).any(-1).all()                      # forced into every token's top-k
    scores = torch.sigmoid(x.view(-1, 8) @ moe.gate.weight.T)
    chosen = scores.gather(1, experts)
    assert torch.allclose(weights, chosen / chosen.sum(-1, keepdim=True), atol=1e-6)
    assert weights.max() < 1                                  # not dominated by 1e6
    moe(x).square().sum().backward()
    assert moe.expert_bias.grad is None
    assert all(p.grad is not None for p in moe.parameters())


def test_bias_updates_balance_a_skewed_router():
    """From a router that sends every token to experts 0 and 1, bias updates alone (no
    gradient step, no auxiliary loss) bring max/mean load to <= 1.5."""
    torch.manual_seed(0)
    moe = MoE(16, 4, 8, 2, bias_rate=0.01).train()
    with torch.no_grad():
        moe.gate.weight.normal_(0, 0.1)
        moe.gate.weight[:2] += 0.3
    x = torch.randn(4, 64, 16) + 0.5     # tokens aligned with the skew
    moe(x)
    start, _ = MoE.load_stats(moe.last_load)
    assert start > 3
    for _ in range(300):
        moe(x)
        moe.update_bias()
    end, _ = MoE.load_stats(moe.last_load)
    assert end <= 1.5
    assert abs(float(moe.expert_bias.mean())) < 1e-6   # centred
    none = MoE(16, 4, 8, 2, balance="none").train()
    none.load_state_dict(moe.state_dict() | {"expert_bias": torch.zeros(8)})
    for _ in range(5):
        none(x)
        none.update_bias()
    assert (none.expert_bias == 0).all()


def test_aux_losses_reward_an_even_load():
    moe = MoE(8, 4, 4, 1, balance="aux", aux_weight=1.0).train()
    probs = torch.full((1, 8, 4), 0.25)
    even = torch.eye(4).repeat(2, 1)[None]
    skew = torch.zeros(1, 8, 4)
    skew[..., 0] = 1
    from zoo.layers.moe import balance_loss
    assert balance_loss(probs, even, 1) == pytest.approx(1.0)
    assert balance_loss(torch.tensor([[[1.0, 0, 0, 0]] * 8]), skew, 1) == pytest.approx(4.0)
    moe(torch.randn(2, 6, 8))
    assert moe.aux_loss.requires_grad and moe.aux_loss > 0
    seq = MoE(8, 4, 4, 1, balance="bias", seq_aux_weight=1e-4).train()
    seq(torch.randn(2, 6, 8))
    assert 0 < seq.aux_loss < 1e-3


def test_training_step_losses_and_load_logs():
    model = _model(mtp_depth=2, balance="aux")
    ids = torch.randint(0, V, (2, 16))
    out = model.training_step((ids[:, :-1], ids[:, 1:]))
    assert {"loss", "loss_mtp", "loss_balance", "log_loss_mtp1", "log_loss_mtp2",
            "log_expert_load_max_over_mean"} <= set(out)
    assert torch.allclose(out["loss_mtp"], 0.3 / 2 * (out["log_loss_mtp1"] + out["log_loss_mtp2"]))
    dense = _model(ffn="dense", mtp_depth=0)
    assert set(dense.training_step((ids[:, :-1], ids[:, 1:]))) == {"loss"}
    assert dense.extra_evaluators() == {}


def test_mtp_module_predicts_the_token_after_next():
    """Depth k at position i reads Emb(t_{i+k}) and is scored on t_{i+k+1}: with a
    sequence whose every token is its position, training only the MTP loss teaches depth
    1 to output (token read) + 1."""
    torch.manual_seed(0)
    model = _model(mtp_depth=1, ffn="dense", n_layer=1)
    ids = torch.arange(17)[None].repeat(4, 1)
    x, y = ids[:, :-1], ids[:, 1:]
    opt = torch.optim.Adam(model.mtp.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        model.training_step((x, y))["loss_mtp"].backward()
        opt.step()
    h = model.hidden(x)
    mod = model.mtp[0]
    logits = model.lm_head(mod.norm(mod(h[:, :15], model.tok_emb(y[:, :15]))))
    assert (logits.argmax(-1) == ids[:, 2:17]).float().mean() > 0.9


def test_on_after_step_moves_the_bias_from_the_training_load():
    model = _model()
    ids = torch.randint(0, V, (4, 16))
    model.train()
    model.training_step((ids[:, :-1], ids[:, 1:]))
    layer = model.moe_layers()[1]
    load = layer.step_load.clone()
    model.on_after_step("main", 1e-3)
    expected = layer.bias_rate * torch.sign(load.mean() - load)
    assert torch.allclose(layer.expert_bias, expected - expected.mean())
    assert layer.step_load.sum() == 0
    with torch.no_grad():   # evaluation forwards do not count
        model.eval()
        model(ids)
    assert layer.step_load.sum() == 0


class _Oracle:
    def __init__(self, model, wrong=False):
        self.model, self.wrong = model, wrong
        self.real = DeepSeek.draft

    def __call__(self, hidden, tokens, n):
        nxt = self.model.generate(tokens, n, temperature=0.0)[0, tokens.shape[1]:]
        return (nxt + 1) % V if self.wrong else nxt


@pytest.mark.parametrize("drafter", ["mtp", "oracle", "wrong"])
@pytest.mark.parametrize("depth", [1, 3])
def test_speculative_decoding_equals_greedy(drafter, depth, monkeypatch):
    model = _model(mtp_depth=depth).double().eval()
    _randomise(model)
    ids = torch.randint(0, V, (2, 4), generator=torch.Generator().manual_seed(3))
    if drafter != "mtp":
        monkeypatch.setattr(model, "draft", _Oracle(model, wrong=drafter == "wrong"))
    greedy = model.generate(ids, 30, temperature=0.0)   # runs past block_size 24: the window slides
    spec, stats = model.generate_speculative(ids, 30)
    assert torch.equal(spec, greedy)
    if drafter == "oracle":
        assert stats["acceptance_rate"] == 1.0 and stats["tokens_per_main_call"] >= 1.5
    if drafter == "wrong":
        assert stats["accepted"] == 0 and stats["drafted"] > 0


def test_speculative_needs_mtp_and_bad_switches_are_one_line_errors():
    with pytest.raises(UserError, match="mtp_depth"):
        _model(mtp_depth=0).generate_speculative(torch.zeros(1, 2, dtype=torch.long), 3)
    for kw in ({"attention": "gqa"}, {"ffn": "sparse"}, {"balance": "x"}, {"score": "relu"}):
        with pytest.raises(UserError, match="must be one of"):
            _model(**kw)
