"""Mixture-of-Experts feed-forward layer in the DeepSeekMoE style (Dai et al. 2024;
DeepSeek-V2, V3).

Every token goes through ``num_shared`` shared experts (fused into one SwiGLU of width
``num_shared * expert_hidden``) and through ``top_k`` of ``num_experts`` routed SwiGLU
experts. Router: s = softmax(x Wᵀ) (V2) or sigmoid(x Wᵀ) (V3) per expert; with
``num_groups`` > 1 the experts form groups, a group scores the sum of its two best
(biased) scores and only the best ``topk_groups`` groups compete; the top-k experts'
*unbiased* scores are normalised to sum 1 (``norm_topk``) and multiplied by
``route_scale``.

Balancing (``balance``):

- ``bias`` (V3, auxiliary-loss-free): a per-expert bias buffer, added to the scores for
  the choice of experts only, never to the weights and never trained by gradients;
  after each optimizer step ``update_bias()`` moves it by -γ for experts that got more
  than the mean load in that step and +γ for those that got less, then centres it;
  ``seq_aux_weight`` adds V3's small sequence-wise balance loss.
- ``aux``: the classic auxiliary loss α·E·Σ_i f_i P_i over the batch (Switch / GShard),
  f_i the fraction of routed slots given to expert i, P_i its mean normalised score.
- ``none``: neither.

Dispatch is vectorised: the (token, slot) pairs are sorted by expert, each expert runs
one matmul over its contiguous block, and the results are scattered back with their
weights (``dense_forward`` computes every expert on every token, the reference it is
tested against).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zoo.layers import Example, _randn
from zoo.registry import buildable

BALANCE = ("bias", "aux", "none")
SCORES = ("sigmoid", "softmax")


@buildable
class SwiGLU(nn.Module):
    """Gated feed-forward network (Shazeer 2020): down(silu(gate(x)) * up(x)), no biases."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    @classmethod
    def example(cls) -> Example:
        return Example(cls(8, 12), (_randn(2, 3, 8),), (2, 3, 8))


def balance_loss(probs: torch.Tensor, chosen: torch.Tensor, top_k: int) -> torch.Tensor:
    """α-free balance loss Σ_i f_i P_i averaged over the leading axis.

    probs (G, T, E): scores normalised over all experts; chosen (G, T, E) 0/1 routed
    slots. f_i = E / (k T) · Σ_t chosen[t, i] (1 for a perfectly even load), P_i =
    mean_t probs[t, i]. G = 1 for the batch-wise loss, G = B for the sequence-wise one.
    """
    E, T = probs.shape[-1], probs.shape[-2]
    f = chosen.float().sum(dim=-2) * (E / (top_k * T))                  # (G, E)
    P = probs.mean(dim=-2)                                              # (G, E)
    return (f * P).sum(-1).mean()


@buildable
class MoE(nn.Module):
    """Shared + routed SwiGLU experts with top-k (optionally group-limited) routing and
    V3 bias balancing, an auxiliary loss, or none (see the module docstring).

    After a forward: ``aux_loss`` (a scalar to add to the loss, 0 when unused),
    ``last_load`` (E,) how many slots each expert received. The routed expert weights
    are stored as ``gate_up_proj`` (E, 2·hidden, D) and ``down_proj`` (E, D, hidden).
    """

    def __init__(self, dim: int, expert_hidden: int, num_experts: int, top_k: int,
                 num_shared: int = 1, score: str = "sigmoid", num_groups: int = 1,
                 topk_groups: int = 1, route_scale: float = 1.0, norm_topk: bool = True,
                 balance: str = "bias", bias_rate: float = 1e-3, aux_weight: float = 0.01,
                 seq_aux_weight: float = 0.0) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if balance not in BALANCE:
            raise ValueError(f"balance must be one of {BALANCE}, got {balance!r}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k {top_k} must be in 1..num_experts ({num_experts})")
        if num_experts % num_groups or not 1 <= topk_groups <= num_groups:
            raise ValueError(f"{num_experts} experts in {num_groups} groups, keeping {topk_groups}")
        if num_groups > 1 and top_k > topk_groups * (num_experts // num_groups):
            raise ValueError(f"top_k {top_k} exceeds the experts of {topk_groups} kept groups")
        self.dim, self.hidden, self.num_experts, self.top_k = dim, expert_hidden, num_experts, top_k
        self.score, self.num_groups, self.topk_groups = score, num_groups, topk_groups
        self.route_scale, self.norm_topk, self.balance = route_scale, norm_topk, balance
        self.bias_rate, self.aux_weight, self.seq_aux_weight = bias_rate, aux_weight, seq_aux_weight
        self.gate = nn.Linear(dim, num_experts, bias=False)                 # router (E, D)
        self.gate_up_proj = nn.Parameter(torch.randn(num_experts, 2 * expert_hidden, dim) * dim ** -0.5)
        self.down_proj = nn.Parameter(torch.randn(num_experts, dim, expert_hidden) * expert_hidden ** -0.5)
        self.shared = SwiGLU(dim, num_shared * expert_hidden) if num_shared > 0 else None
        # selection-only bias: a buffer, so no optimizer or gradient ever touches it, and
        # checkpoints carry it
        self.register_buffer("expert_bias", torch.zeros(num_experts))
        # slots per expert since the last optimizer step (training forwards only)
        self.register_buffer("step_load", torch.zeros(num_experts), persistent=False)
        self.last_load = torch.zeros(num_experts)
        self.aux_loss = torch.zeros(())

    # -- routing ---------------------------------------------------------------------------
    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (N, D) -> (weights (N, k), experts (N, k) int64, probs (N, E) normalised scores)."""
        logits = F.linear(x.float() if x.dtype != torch.float64 else x,
                          self.gate.weight.to(torch.float64 if x.dtype == torch.float64 else torch.float32))
        scores = logits.sigmoid() if self.score == "sigmoid" else logits.softmax(-1)   # (N, E)
        choice = scores + self.expert_bias.to(scores.dtype)                  # selection only
        if self.num_groups > 1:
            N = x.shape[0]
            grouped = choice.view(N, self.num_groups, -1)
            group_score = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)  # (N, G)
            keep = group_score.topk(self.topk_groups, dim=-1).indices
            group_mask = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, keep, True)
            choice = choice.masked_fill(~group_mask.repeat_interleave(grouped.shape[-1], dim=1),
                                        float("-inf"))
        experts = choice.topk(self.top_k, dim=-1).indices                    # (N, k)
        weights = scores.gather(1, experts)
        if self.norm_topk:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        probs = scores if self.score == "softmax" else scores / scores.sum(-1, keepdim=True)
        return (weights * self.route_scale).to(x.dtype), experts, probs

    def _expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x, self.gate_up_proj[e]).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_proj[e])

    def dispatch(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """Sorted dispatch: x (N, D), weights/experts (N, k) -> (N, D)."""
        _N, k = experts.shape
        flat = experts.reshape(-1)                                           # (N k,)
        order = flat.argsort(stable=True)
        token = order // k                                                   # source token per slot
        counts = torch.bincount(flat, minlength=self.num_experts).tolist()
        xs = x.index_select(0, token)                                        # (N k, D) grouped by expert
        ws = weights.reshape(-1).index_select(0, order)[:, None]             # (N k, 1)
        # unbind once: indexing the (E, ., .) parameters per expert would give each expert's
        # backward a full-size zero gradient to fill and add
        gate_up, down = self.gate_up_proj.unbind(0), self.down_proj.unbind(0)
        outs = []
        for e, part in enumerate(xs.split(counts)):
            if part.shape[0]:                                                # one matmul per expert
                gate, up = F.linear(part, gate_up[e]).chunk(2, dim=-1)
                outs.append(F.linear(F.silu(gate) * up, down[e]))
        y = torch.cat(outs, dim=0) * ws                                      # (N k, D)
        return torch.zeros_like(x).index_add_(0, token, y)

    def dense_forward(self, x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        """Reference: every expert on every token, mixed by the one-hot weight matrix."""
        mix = torch.zeros(x.shape[0], self.num_experts, dtype=x.dtype, device=x.device)
        mix.scatter_add_(1, experts, weights)                                # (N, E)
        every = torch.stack([self._expert(e, x) for e in range(self.num_experts)], dim=1)  # (N, E, D)
        return (mix[..., None] * every).sum(1)

    def forward(self, x: torch.Tensor, dense: bool = False) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D)."""
        B, T, D = x.shape
        flat = x.reshape(B * T, D)
        weights, experts, probs = self.route(flat)
        y = (self.dense_forward if dense else self.dispatch)(flat, weights, experts)
        load = torch.bincount(experts.reshape(-1), minlength=self.num_experts).to(self.step_load.dtype)
        self.last_load = load.detach()
        if self.training and torch.is_grad_enabled():
            self.step_load += load
        self.aux_loss = self._aux(probs, experts, B, T)
        if self.shared is not None:
            y = y + self.shared(flat)
        return y.view(B, T, D)

    def _aux(self, probs: torch.Tensor, experts: torch.Tensor, B: int, T: int) -> torch.Tensor:
        weight = (self.aux_weight if self.balance == "aux"
                  else self.seq_aux_weight if self.balance == "bias" else 0.0)
        if not weight or not self.training:
            return probs.new_zeros(())
        chosen = torch.zeros_like(probs).scatter_(1, experts, 1.0)           # (N, E)
        E = self.num_experts
        if self.balance == "aux":   # batch-wise
            return weight * balance_loss(probs[None], chosen[None], self.top_k)
        return weight * balance_loss(probs.view(B, T, E), chosen.view(B, T, E), self.top_k)

    # -- balancing ---------------------------------------------------------------------------
    @torch.no_grad()
    def update_bias(self) -> None:
        """After an optimizer step: b_i -= γ if expert i was overloaded, += γ if underloaded
        (sign of mean - load), centred so the biases do not drift; clears the step's load."""
        load = self.step_load
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(load)
        if self.balance == "bias" and load.sum() > 0:
            self.expert_bias += self.bias_rate * torch.sign(load.mean() - load)
            self.expert_bias -= self.expert_bias.mean()
        load.zero_()

    @staticmethod
    def load_stats(load: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """load (..., E) slot counts -> (max / mean, entropy / ln E), 1 and 1 when even."""
        load = load.float()
        mean = load.mean(-1).clamp_min(1e-12)
        p = load / load.sum(-1, keepdim=True).clamp_min(1e-12)
        entropy = -(p * p.clamp_min(1e-12).log()).sum(-1) / torch.log(torch.tensor(float(load.shape[-1])))
        return load.max(-1).values / mean, entropy

    @classmethod
    def example(cls) -> Example:
        # every routed expert gets tokens (24 tokens, 2 of 4 each), so all receive gradient
        return Example(cls(8, 6, 4, 2, num_groups=2, topk_groups=2, route_scale=2.5),
                       (_randn(2, 12, 8),), (2, 12, 8))
