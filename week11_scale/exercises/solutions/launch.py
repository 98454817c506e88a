"""Week 11 exercise, worked: ``all_mean`` (see ../launch.py for the task)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def all_mean(values: dict) -> dict:
    """``{name: float}`` averaged over the ranks in one all-reduce of a float64 vector."""
    if not dist.is_initialized() or dist.get_world_size() == 1 or not values:
        return {k: float(v) for k, v in values.items()}
    keys = list(values)
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
    vec = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(vec, op=dist.ReduceOp.SUM)                   # (n_metrics,)
    vec /= dist.get_world_size()
    return dict(zip(keys, vec.tolist()))
