"""Worked solution: the dispatch plan (see ../expert_parallel.py for the task)."""

from __future__ import annotations

import torch

from track_moe.expert_parallel import DispatchPlan


def dispatch_plan(idx: torch.Tensor, n_experts: int, world_size: int) -> DispatchPlan:
    S, k = idx.shape
    expert_of_pair = idx.flatten()                                   # (S*k,), pair p = t*k + j
    order = expert_of_pair.argsort(stable=True)                      # grouped by expert
    token_of_pair = torch.arange(S, device=idx.device).repeat_interleave(k)
    counts = torch.zeros(n_experts, dtype=torch.long, device=idx.device)
    counts.scatter_add_(0, expert_of_pair, torch.ones_like(expert_of_pair))
    per_rank = n_experts // world_size
    send = counts.reshape(world_size, per_rank).sum(dim=1)
    return DispatchPlan(order=order, tokens=token_of_pair[order], expert_counts=counts,
                        send_counts=send)
