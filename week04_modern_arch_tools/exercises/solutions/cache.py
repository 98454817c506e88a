"""Worked solution: the KV cache's update (week04 exercises)."""

from __future__ import annotations

import torch


def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
    """Write k, v (B, Hkv, T, hd) or (B, Hkv, hd) at ``pos``; return (B, Hkv, pos + T, hd) views."""
    if k.dim() == 3:  # one token per row, from the decode step
        k, v = k[:, :, None], v[:, :, None]
    T = k.size(2)
    end = self.pos + T
    if end > self.max_len:
        raise ValueError(f"the cache holds {self.max_len} positions: {self.pos} are used and "
                         f"{T} more do not fit; start a new cache")
    self.k[layer, :, :, self.pos:end] = k
    self.v[layer, :, :, self.pos:end] = v
    return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
