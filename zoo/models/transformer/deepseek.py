"""DeepSeek-style decoder (DeepSeek-V2 2024, DeepSeek-V3 2024): Multi-head Latent
Attention, a DeepSeekMoE feed-forward layer after ``first_k_dense`` dense ones, and
Multi-Token Prediction modules that also draft tokens for self-speculative decoding.

Every part can be switched off to measure it: ``attention=mha|mla``, ``ffn=dense|moe``,
``mtp_depth=0..``, ``balance=bias|aux|none``, ``score=sigmoid|softmax``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.batches import TokenBatch
from zoo.data.tokenizers import TokenizerSlot
from zoo.errors import UserError, choices
from zoo.layers.attention import TransformerBlock, causal_mask
from zoo.layers.decoding import sample_next
from zoo.layers.mla import (
    MultiHeadLatentAttention,
    RMSNorm,
    RotaryAttention,
    cache_length,
    trim_cache,
)
from zoo.layers.moe import BALANCE, SCORES, MoE, SwiGLU
from zoo.metrics.base import Evaluator
from zoo.models.base import ZooModel
from zoo.models.sequence.generation import TextGenerator

IGNORE = -100


def _choice(name: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise UserError(f"model.{name} must be one of {choices(valid)}, got '{value}'")
    return value


class MTPModule(nn.Module):
    """Multi-token prediction depth k (DeepSeek-V3 §2.2): h' = Block(W [RMSNorm(h^{k-1});
    RMSNorm(Emb(t_{i+k}))]) at position i, then the shared head on RMSNorm(h') predicts
    t_{i+k+1}. The embedding and the output head are the main model's."""

    def __init__(self, dim: int, block: nn.Module, eps: float) -> None:
        super().__init__()
        self.norm_h, self.norm_e = RMSNorm(dim, eps), RMSNorm(dim, eps)
        self.proj = nn.Linear(2 * dim, dim, bias=False)
        self.block = block
        self.norm = RMSNorm(dim, eps)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """h, emb (B, L, D) -> h' (B, L, D) (before the output norm)."""
        L = h.shape[1]
        x = self.proj(torch.cat([self.norm_h(h), self.norm_e(emb)], dim=-1))
        return self.block(x, mask=causal_mask(L, L, h.device))


class ExpertLoadEvaluator(Evaluator):
    """Slots per routed expert over a split, per MoE layer: ``load_max_over_mean`` (1 =
    even; the mean over layers), ``load_entropy`` (normalised, 1 = even) and per layer
    ``load_max_over_mean_l{i}``. Reads what each MoE layer routed in the forward pass just
    before ``update``."""

    state_keys = ("counts",)

    def __init__(self, layers: dict[int, MoE]) -> None:
        self.layers = layers
        super().__init__()

    def reset(self) -> None:
        E = next(iter(self.layers.values())).num_experts
        self.counts = torch.zeros(len(self.layers), E, dtype=torch.float64)

    def update(self, predictions: Any, batch: Any) -> None:
        self.counts += torch.stack([m.last_load.detach().cpu().double() for m in self.layers.values()])

    def compute(self) -> dict[str, Any]:
        ratio, entropy = MoE.load_stats(self.counts)
        out = {"load_max_over_mean": float(ratio.mean()), "load_entropy": float(entropy.mean())}
        for (i, _), r in zip(self.layers.items(), ratio.tolist()):
            out[f"load_max_over_mean_l{i}"] = r
        return out


class DeepSeek(TextGenerator, ZooModel):
    """Small DeepSeek-V3-style language model: token embedding, pre-norm (RMSNorm) blocks of
    MLA (or rotary MHA/GQA) and SwiGLU / MoE, a final RMSNorm and an output head (tied to
    the embedding unless ``tie_embeddings=false``), plus ``mtp_depth`` MTP modules whose
    losses are added as (λ / D) Σ_k L_k. Positions are rotary, so nothing is learned per
    position; the context is still bounded by ``block_size``.
    """

    def __init__(self, *, vocab_size: int, block_size: int = 64, n_layer: int = 4, n_head: int = 4,
                 n_embd: int = 128, attention: str = "mla", ffn: str = "moe",
                 kv_lora_rank: int = 16, q_lora_rank: int | None = None, qk_nope_dim: int = 32,
                 qk_rope_dim: int = 16, v_head_dim: int = 32, n_kv_head: int | None = None,
                 ffn_hidden: int = 384, n_experts: int = 8, n_shared: int = 1, top_k: int = 2,
                 expert_hidden: int = 128, first_k_dense: int = 1, score: str = "sigmoid",
                 n_groups: int = 1, topk_groups: int = 1, route_scale: float = 1.0,
                 norm_topk: bool = True, balance: str = "bias", bias_rate: float = 1e-2,
                 aux_weight: float = 0.01, seq_aux_weight: float = 0.0, mtp_depth: int = 1,
                 mtp_weight: float = 0.3, rope_base: float = 10000.0, norm_eps: float = 1e-6,
                 tie_embeddings: bool = True, dropout: float = 0.0) -> None:
        hparams = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        self.hparams = hparams   # the constructor's arguments, for conversion to other formats
        self.attention = _choice("attention", attention, ("mla", "mha"))
        self.ffn = _choice("ffn", ffn, ("moe", "dense"))
        _choice("score", score, SCORES)
        _choice("balance", balance, BALANCE)
        if mtp_depth < 0:
            raise UserError(f"model.mtp_depth must be >= 0, got {mtp_depth}")
        self.vocab_size, self.block_size, self.mtp_weight = vocab_size, block_size, mtp_weight
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.drop = nn.Dropout(dropout)
        norm = functools.partial(RMSNorm, eps=norm_eps)

        def attn() -> nn.Module:
            if self.attention == "mla":
                return MultiHeadLatentAttention(n_embd, n_head, kv_lora_rank, qk_nope_dim, qk_rope_dim,
                                                v_head_dim, q_lora_rank, rope_base, dropout)
            return RotaryAttention(n_embd, n_head, n_kv_head, rope_base, dropout)

        def feed_forward(i: int) -> nn.Module:
            if self.ffn == "dense" or i < first_k_dense:
                return SwiGLU(n_embd, ffn_hidden)
            return MoE(n_embd, expert_hidden, n_experts, top_k, n_shared, score, n_groups, topk_groups,
                       route_scale, norm_topk, balance, bias_rate, aux_weight, seq_aux_weight)

        self.blocks = nn.ModuleList(
            TransformerBlock(n_embd, dropout=dropout, norm_first=True, attn=attn(), ffn=feed_forward(i),
                             norm=norm) for i in range(n_layer))
        self.norm = RMSNorm(n_embd, norm_eps)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.mtp = nn.ModuleList(
            MTPModule(n_embd, TransformerBlock(n_embd, dropout=dropout, norm_first=True, attn=attn(),
                                               ffn=SwiGLU(n_embd, ffn_hidden), norm=norm), norm_eps)
            for _ in range(mtp_depth))
        self.tokenizer_slot = TokenizerSlot()
        self.apply(self._init_weights)
        if tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        for name, p in self.named_parameters():  # residual projections scaled as in GPT-2
            if name.endswith(("o_proj.weight", "down_proj.weight", ".down_proj")):
                p.data.mul_(1 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        if isinstance(m, MoE):
            nn.init.normal_(m.gate_up_proj, mean=0.0, std=0.02)
            nn.init.normal_(m.down_proj, mean=0.0, std=0.02)

    # -- parts --------------------------------------------------------------------------------
    def moe_layers(self) -> dict[int, MoE]:
        """Block index -> MoE layer, for the blocks that route."""
        return {i: b.ff for i, b in enumerate(self.blocks) if isinstance(b.ff, MoE)}

    def cache_bytes_per_token(self, dtype: torch.dtype = torch.float32) -> int:
        """What generation keeps per token, all layers together."""
        return sum(b.self_attn.cache_bytes_per_token(dtype) for b in self.blocks)

    def hidden(self, ids: torch.Tensor, caches: list[dict] | None = None) -> torch.Tensor:
        """ids (B, T) -> last block's output (B, T, D), before the final norm. With ``caches``
        (one dict per block) the ids continue the cached positions."""
        T = ids.shape[1]
        start = cache_length(caches[0]) if caches else 0
        if start + T > self.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.block_size}")
        x = self.drop(self.tok_emb(ids))
        mask = causal_mask(T, start + T, ids.device)                     # (T, start+T)
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, cache=None if caches is None else caches[i])
        return x

    def forward(self, ids: torch.Tensor, caches: list[dict] | None = None) -> torch.Tensor:
        """ids (B, T) -> logits (B, T, V)."""
        return self.lm_head(self.norm(self.hidden(ids, caches)))

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        x, y = TokenBatch.of(batch)
        h = self.hidden(x)
        logits = self.lm_head(self.norm(h))
        out = {"loss": F.cross_entropy(logits.reshape(-1, self.vocab_size), y.reshape(-1),
                                       ignore_index=IGNORE)}
        if len(self.mtp):
            T, hk, losses = x.shape[1], h, []
            for k, module in enumerate(self.mtp, start=1):
                L = T - k
                if L <= 0:
                    break
                # position i: h^{k-1}_i and the embedding of t_{i+k} (= y_{i+k-1}) -> t_{i+k+1}
                nxt = y[:, k - 1: k - 1 + L]
                hk = module(hk[:, :L], self.tok_emb(nxt.clamp_min(0)))
                lk = F.cross_entropy(self.lm_head(module.norm(hk)).reshape(-1, self.vocab_size),
                                     y[:, k: k + L].reshape(-1), ignore_index=IGNORE)
                losses.append(lk)
                out[f"log_loss_mtp{k}"] = lk.detach()
            if losses:
                out["loss_mtp"] = self.mtp_weight / len(self.mtp) * torch.stack(losses).sum()
        moe = self.moe_layers()
        if moe:
            aux = sum(m.aux_loss for m in moe.values())
            if isinstance(aux, torch.Tensor) and aux.requires_grad:
                out["loss_balance"] = aux
            ratio, entropy = MoE.load_stats(torch.stack([m.last_load for m in moe.values()]))
            out["log_expert_load_max_over_mean"] = ratio.mean()
            out["log_expert_load_entropy"] = entropy.mean()
            for (i, _), r in zip(moe.items(), ratio):
                out[f"log_expert_load_max_over_mean_l{i}"] = r
        return out

    def on_after_step(self, group: str, lr: float) -> None:
        for m in self.moe_layers().values():
            m.update_bias()

    def extra_evaluators(self) -> dict[str, Evaluator]:
        moe = self.moe_layers()
        return {"expert": ExpertLoadEvaluator(moe)} if moe else {}

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self(TokenBatch.of(batch).inputs)

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
        """Continue ids (B, T0) by ``max_new_tokens`` tokens; the model sees the last
        ``block_size``. The cache holds MLA's latents (or MHA's keys and values); once the
        context slides past ``block_size`` the window is recomputed."""
        was_training = self.training
        self.eval()
        out, caches = ids, None
        for _ in range(max_new_tokens):
            if not use_cache or out.shape[1] > self.block_size:
                logits = self(out[:, -self.block_size:])
            elif caches is None:
                caches = [{} for _ in self.blocks]
                logits = self(out, caches)
            else:
                logits = self(out[:, -1:], caches)
            nxt = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
            out = torch.cat([out, nxt[:, None]], dim=1)
        self.train(was_training)
        return out

    def draft(self, hidden: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
        """Greedy drafts of the n tokens after ``tokens`` (1, L) from the MTP modules, given
        the main model's hidden states (1, L-1, D) at positions 0..L-2 -> (n,) ids."""
        L = tokens.shape[1]
        ext, hk, drafts = tokens, hidden, []
        for k in range(1, n + 1):
            module = self.mtp[k - 1]
            hk = module(hk, self.tok_emb(ext[:, k: k + L - 1]))
            d = self.lm_head(module.norm(hk[:, -1])).argmax(-1)          # predicts t_{L-1+k}
            drafts.append(d)
            ext = torch.cat([ext, d[:, None]], dim=1)
        return torch.cat(drafts)

    @torch.no_grad()
    def generate_speculative(self, ids: torch.Tensor, max_new_tokens: int
                             ) -> tuple[torch.Tensor, dict[str, float]]:
        """Greedy self-speculative decoding: the MTP modules draft up to ``mtp_depth`` tokens,
        one cached forward of the main model checks them all, the longest agreeing prefix is
        kept plus the main model's own next token. Output equals greedy decoding; returns
        (ids (B, T0 + new), {acceptance_rate, drafted, accepted, main_calls})."""
        if not len(self.mtp):
            raise UserError("speculative decoding drafts with the MTP modules; this run has "
                            "model.mtp_depth=0")
        was_training = self.training
        self.eval()
        stats = {"drafted": 0, "accepted": 0, "main_calls": 0}
        rows = [self._speculative_row(row[None], max_new_tokens, stats) for row in ids]
        self.train(was_training)
        stats["acceptance_rate"] = stats["accepted"] / max(stats["drafted"], 1)
        stats["tokens_per_main_call"] = max_new_tokens * len(rows) / max(stats["main_calls"], 1)
        return torch.cat(rows), stats

    def _speculative_row(self, out: torch.Tensor, left: int, stats: dict) -> torch.Tensor:
        if left <= 0:
            return out
        if out.shape[1] > self.block_size:
            stats["main_calls"] += left
            return self.generate(out, left, temperature=0.0)
        caches = [{} for _ in self.blocks]
        hid = self.hidden(out, caches)                                   # (1, L, D)
        stats["main_calls"] += 1
        nxt = self.lm_head(self.norm(hid[:, -1])).argmax(-1)             # certain
        while left > 0:
            out = torch.cat([out, nxt[:, None]], dim=1)
            left -= 1
            L = out.shape[1]
            m = min(len(self.mtp), left, self.block_size - L)
            if left == 0:
                break
            if m <= 0:   # the context is full: plain greedy decoding from here
                stats["main_calls"] += left
                return self.generate(out, left, temperature=0.0)
            drafts = self.draft(hid, out, m)
            chunk = torch.cat([nxt, drafts])[None]                        # (1, 1 + m)
            h_new = self.hidden(chunk, caches)
            stats["main_calls"] += 1
            greedy = self.lm_head(self.norm(h_new[0])).argmax(-1)         # (1 + m,)
            n = 0
            while n < m and greedy[n] == drafts[n]:
                n += 1
            stats["drafted"] += m
            stats["accepted"] += n
            out = torch.cat([out, drafts[None, :n]], dim=1)
            left -= n
            for c in caches:
                trim_cache(c, L + n)
            hid = torch.cat([hid, h_new[:, : 1 + n]], dim=1)
            nxt = greedy[n: n + 1]
        return out
