"""Worked solution: MoE top-k routing (week08 exercises)."""

from __future__ import annotations

import torch


def route(logits: torch.Tensor, bias: torch.Tensor, config):
    """Softmax or sigmoid scores; top-k of scores + bias within the best groups; weights."""
    N, k = logits.size(-1), config.num_experts_per_tok
    if config.gating == "softmax":
        scores = torch.softmax(logits, dim=-1)
        probs = scores
    else:
        scores = logits.sigmoid()
        probs = scores / scores.sum(-1, keepdim=True)
    choice = scores + bias                                   # the bias picks, never weighs
    if config.n_group > 1:
        g, n = config.n_group, N // config.n_group
        group_scores = choice.view(-1, g, n).topk(min(2, n), dim=-1).values.sum(-1)  # (S, g)
        best = group_scores.topk(config.topk_group, dim=-1).indices
        keep = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, best, True)
        choice = choice.masked_fill(~keep.repeat_interleave(n, dim=1), float("-inf"))
    idx = choice.topk(k, dim=-1).indices                     # (S, k)
    weights = scores.gather(1, idx)
    if config.norm_topk_prob:
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
    return weights * config.routed_scaling_factor, idx, probs
