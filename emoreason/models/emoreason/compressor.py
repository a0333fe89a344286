"""Mixture-of-experts token compressor: any number of encoder tokens → a fixed budget of tokens per clip.

Each expert is a perceiver-style block: ``budget`` learned queries cross-attend the (masked) encoder tokens, then an
MLP. Every expert emits the whole budget, so the mixture ``Σ_i g_i · expert_i(x)`` has exactly ``budget`` tokens
whatever the clip length. The gate is an MLP over the masked mean of the input tokens: "soft" routing uses the full
softmax, "topk" keeps the ``top_k`` largest gates renormalised (all experts are still computed; at these sizes that is
cheaper than gathering). Load balancing is Switch-style ``N · Σ_i f_i · P_i`` over the batch (f_i: fraction of
samples whose top-1 expert is i, P_i: mean gate probability of i); it is 1.0 when perfectly balanced.
``uniform_pool`` is the no-compressor ablation: masked mean over ``budget`` equal temporal segments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Expert(nn.Module):
    """Learned queries + cross-attention + MLP (pre-norm, residual)."""

    def __init__(self, d: int, budget: int, heads: int, ffn_mult: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(budget, d) * 0.02)
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Linear(ffn_mult * d, d))

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        q = self.queries[None].expand(x.shape[0], -1, -1).to(x.dtype)
        kv = self.norm_kv(x)
        h = q + self.attn(self.norm_q(q), kv, kv, key_padding_mask=key_padding_mask, need_weights=False)[0]
        return h + self.ff(self.norm_ff(h))


class MoECompressor(nn.Module):
    """Gated mixture of :class:`Expert` blocks; returns (tokens (B, budget, d), aux_loss, gate probabilities (B, N))."""

    def __init__(self, d: int, budget: int, num_experts: int, routing: str, top_k: int, heads: int, ffn_mult: int):
        super().__init__()
        self.routing, self.top_k, self.num_experts = routing, top_k, num_experts
        self.experts = nn.ModuleList(Expert(d, budget, heads, ffn_mult) for _ in range(num_experts))
        self.gate = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, num_experts))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keep = mask.clone()
        keep[~mask.any(1), 0] = True  # an empty clip attends to its (zeroed) first step instead of nothing
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        probs = self.gate(pooled).float().softmax(-1)
        weights = probs
        if self.routing == "topk" and self.top_k < self.num_experts:
            top = probs.topk(self.top_k, dim=-1)
            weights = torch.zeros_like(probs).scatter(-1, top.indices, top.values)
            weights = weights / weights.sum(-1, keepdim=True)
        outs = torch.stack([e(x, ~keep) for e in self.experts], dim=1)  # (B, N, budget, d)
        tokens = (weights.to(x.dtype)[:, :, None, None] * outs).sum(1)
        f = F.one_hot(probs.argmax(-1), self.num_experts).float().mean(0)
        aux = self.num_experts * (f * probs.mean(0)).sum()
        return tokens, aux, probs


def uniform_pool(x: torch.Tensor, mask: torch.Tensor, budget: int) -> torch.Tensor:
    """Masked mean over ``budget`` equal segments of each clip's valid steps; a clip shorter than the budget repeats
    its nearest step. Returns (B, budget, d)."""
    b, t, d = x.shape
    lengths = mask.sum(1).clamp(min=1)
    seg = (torch.arange(t, device=x.device)[None] * budget // lengths[:, None]).clamp(max=budget - 1)
    seg = torch.where(mask, seg, torch.full_like(seg, budget))  # padding goes to a dropped extra bucket
    sums = x.new_zeros(b, budget + 1, d).scatter_add_(1, seg[..., None].expand(-1, -1, d), x)
    counts = x.new_zeros(b, budget + 1).scatter_add_(1, seg, mask.to(x.dtype))[:, :budget, None]
    near = ((torch.arange(budget, device=x.device)[None] + 0.5) * lengths[:, None] / budget).long().clamp(max=t - 1)
    nearest = x.gather(1, near[..., None].expand(-1, -1, d))
    return torch.where(counts > 0, sums[:, :budget] / counts.clamp(min=1.0), nearest)
