"""Written-out attention equals PyTorch's SDPA (fully masked rows included), the block
equals torch's TransformerEncoderLayer; causal models never look ahead; the KV cache
changes nothing but the work done."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torch import nn

from zoo.layers.attention import (
    FeedForward,
    MultiHeadAttention,
    SinusoidalPositions,
    TransformerBlock,
    attention,
    causal_mask,
)
from zoo.models.transformer.gpt import GPT
from zoo.models.transformer.transformer import Transformer


def test_attention_equals_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    mask = causal_mask(5, 5)
    torch.testing.assert_close(attention(q, k, v, mask),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))
    pad = torch.rand(2, 1, 1, 5) > 0.3
    pad[..., 0] = True  # at least one key per row
    torch.testing.assert_close(attention(q, k, v, pad),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=pad))


def test_fully_masked_row_gives_zeros_as_sdpa_does():
    torch.manual_seed(0)
    q = torch.randn(2, 3, 4, 8, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, 3, 6, 8, dtype=torch.float64, requires_grad=True) for _ in range(2))
    mask = torch.rand(2, 3, 4, 6) > 0.4
    mask[..., 0] = True
    mask[0, 1, 2] = False          # one query of one head sees no key at all
    mask[1, :, 0] = False          # the first query of the second sample, every head
    ours = attention(q, k, v, mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, ref)
    assert (ours[0, 1, 2] == 0).all() and (ours[1, :, 0] == 0).all()
    # gradients are finite and equal torch's: an empty row passes no gradient
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (q, k, v), g)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(grads, ref_grads):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)
    assert (grads[0][0, 1, 2] == 0).all()


def test_all_padding_sequence_gives_finite_outputs():
    # a batch row that is all padding (mask (B, 1, 1, T) all False) stays finite
    mha = MultiHeadAttention(8, 2).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    keep = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    keep[1] = False
    out = mha(x, mask=keep)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], mha.out_proj.bias.expand(5, 8))  # zero attention


@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "gelu")])
def test_block_equals_torch_encoder_layer(norm_first, activation):
    torch.manual_seed(0)
    ours = TransformerBlock(16, 4, 32, dropout=0.0, norm_first=norm_first,
                            activation=activation).double().eval()
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                     batch_first=True, norm_first=norm_first).double().eval()
    a = ours.self_attn
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        ref.self_attn.out_proj.load_state_dict(a.out_proj.state_dict())
        ref.linear1.load_state_dict(ours.ff.net[0].state_dict())
        ref.linear2.load_state_dict(ours.ff.net[3].state_dict())
        ref.norm1.load_state_dict(ours.norm1.state_dict())
        ref.norm2.load_state_dict(ours.norm3.state_dict())
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    mask = causal_mask(7, 7)
    # torch's boolean src_mask marks what may NOT be attended
    torch.testing.assert_close(ours(x, mask=mask), ref(x, src_mask=~mask))


def test_block_uses_injected_attention_and_feed_forward():
    calls = []

    class Mean(nn.Module):  # "attention" that averages over time
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x, mask=None, cache=None):
            calls.append("attn")
            return self.scale * x.mean(1, keepdim=True).expand_as(x)

    ffn = FeedForward(8, 12)
    block = TransformerBlock(8, attn=Mean(), ffn=ffn, norm=nn.RMSNorm, norm_first=True)
    assert block.ff is ffn and isinstance(block.norm1, nn.RMSNorm)
    assert "self_attn.scale" in block.state_dict()
    x = torch.randn(2, 4, 8)
    y = block(x)
    assert calls == ["attn"]
    expected = x + block.self_attn(block.norm1(x))
    expected = expected + ffn(block.norm3(expected))
    torch.testing.assert_close(y, expected)
    with pytest.raises(ValueError, match="num_heads"):
        TransformerBlock(8, ff_dim=16)


def test_causal_mask_with_cached_prefix():
    # 2 new queries after 3 cached positions: query i sits at absolute position 3 + i
    m = causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


def test_multihead_equals_torch_multihead():
    torch.manual_seed(0)
    ours = MultiHeadAttention(16, 4).double()
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    expected, _ = ref(x, x, x, attn_mask=~causal_mask(6, 6), need_weights=False)
    torch.testing.assert_close(ours(x, mask=causal_mask(6, 6)), expected)


def test_sinusoidal_positions():
    pe = SinusoidalPositions(8, 50)(50)
    assert torch.allclose(pe[:, 0], torch.sin(torch.arange(50.0)))
    assert torch.allclose(pe[:, 1], torch.cos(torch.arange(50.0)))
    assert pe.abs().max() <= 1


def _tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16).eval()


def test_gpt_causal_no_leak():
    model = _tiny_gpt()
    x = torch.randint(0, 20, (2, 12))
    base = model(x)
    for t in range(11):
        y = x.clone()
        y[:, t + 1:] = (y[:, t + 1:] + 7) % 20  # change everything after t
        torch.testing.assert_close(model(y)[:, : t + 1], base[:, : t + 1])
        assert not torch.allclose(model(y)[:, t + 1:], base[:, t + 1:])


def test_transformer_decoder_causal_no_leak():
    torch.manual_seed(0)
    model = Transformer(vocab_size=14, dim=16, num_heads=2, ff_dim=32, dropout=0.0).eval()
    src = torch.randint(3, 14, (2, 6))
    tgt = torch.randint(3, 14, (2, 8))
    base = model(src, tgt)
    for t in range(7):
        y = tgt.clone()
        y[:, t + 1] = (y[:, t + 1] + 5) % 11 + 3
        torch.testing.assert_close(model(src, y)[:, : t + 1], base[:, : t + 1])


@pytest.mark.parametrize("sampling", [{"temperature": 0.0}, {"temperature": 1.0, "top_k": 8},
                                      {"temperature": 0.9, "top_p": 0.9}])
def test_kv_cache_generation_identical_and_cheaper(sampling):
    model = _tiny_gpt().double()
    prompt = torch.randint(0, 20, (3, 4))
    seen = []
    hook = model.tok_emb.register_forward_hook(lambda m, i, o: seen.append(i[0].numel()))
    g = torch.Generator().manual_seed(5)
    cached = model.generate(prompt, 10, generator=g, **sampling)
    work_cached = sum(seen)
    seen.clear()
    g = torch.Generator().manual_seed(5)
    plain = model.generate(prompt, 10, generator=g, use_cache=False, **sampling)
    work_plain = sum(seen)
    hook.remove()
    assert torch.equal(cached, plain)
    # the cache feeds every position once: 3 x (4 + 9) tokens instead of 3 x sum(4..13)
    assert work_cached == 3 * (4 + 9)
    assert work_plain == 3 * sum(range(4, 14))


def test_generation_past_block_size_slides_the_window():
    model = _tiny_gpt()
    prompt = torch.randint(0, 20, (1, 10))
    a = model.generate(prompt, 12, temperature=0.0)
    b = model.generate(prompt, 12, temperature=0.0, use_cache=False)
    assert a.shape == (1, 22) and torch.equal(a, b)


def test_multi_head_attention_fused_and_written_out_agree():
    """The layer's default fused SDPA path and the written-out formula give the same
    outputs and gradients, with a mask and through a key/value cache."""
    from zoo.layers.attention import MultiHeadAttention, causal_mask

    torch.manual_seed(0)
    fused = MultiHeadAttention(16, 4).double()
    plain = MultiHeadAttention(16, 4, fused=False).double()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 7, 16, dtype=torch.float64, requires_grad=True)
    a, b = fused(x, mask=causal_mask(7, 7)), plain(x, mask=causal_mask(7, 7))
    torch.testing.assert_close(a, b)
    g = torch.randn_like(a)
    torch.testing.assert_close(torch.autograd.grad(a, x, g)[0], torch.autograd.grad(b, x, g)[0])
    ca, cb = {}, {}
    fused(x[:, :5], mask=causal_mask(5, 5), cache=ca)
    plain(x[:, :5], mask=causal_mask(5, 5), cache=cb)
    torch.testing.assert_close(fused(x[:, 5:], mask=causal_mask(2, 7), cache=ca),
                               plain(x[:, 5:], mask=causal_mask(2, 7), cache=cb))
