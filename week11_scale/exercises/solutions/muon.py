"""Week 11 exercise, worked: ``ShardedMuon.orthogonalize`` (see ../muon.py for the task)."""

from __future__ import annotations

import torch

from week03_training.optim import newton_schulz


def orthogonalize(self, u: torch.Tensor, group: dict) -> torch.Tensor:
    """NS of the whole matrix; a DTensor shard comes back as this rank's rows of it."""
    from torch.distributed.tensor import DTensor, distribute_tensor
    if not isinstance(u, DTensor):
        return newton_schulz(u, steps=group["ns_steps"], dtype=self.ns_dtype)
    full = u.full_tensor()                                       # (m, n), the same on every rank
    o = newton_schulz(full, steps=group["ns_steps"], dtype=self.ns_dtype)
    return distribute_tensor(o, u.device_mesh, u.placements, src_data_rank=None)
