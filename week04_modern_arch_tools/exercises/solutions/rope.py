"""Worked solutions: RoPE's frequencies and rotation (week04 exercises)."""

from __future__ import annotations

import math

import torch


def rope_inv_freq(head_dim: int, base: float = 10000.0,
                  scaling: dict | None = None) -> torch.Tensor:
    """base^(-2i/d) per channel pair, (head_dim/2,), then the linear or llama3 scaling."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)  # (hd/2,)
    if scaling is None:
        return inv
    kind, factor = scaling.get("rope_type", scaling.get("type")), float(scaling["factor"])
    if kind == "linear":
        return inv / factor
    lo = float(scaling.get("low_freq_factor", 1.0))
    hi = float(scaling.get("high_freq_factor", 4.0))
    old = float(scaling.get("original_max_position_embeddings", 8192))
    wavelen = 2 * math.pi / inv
    smooth = (old / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * inv / factor + smooth * inv
    out = torch.where(wavelen > old / lo, inv / factor, blended)  # slow pairs: scaled
    return torch.where(wavelen < old / hi, inv, out)  # fast pairs: unchanged


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, rotate_half(x1, x2) = (-x2, x1); shape of x."""
    x1, x2 = x.chunk(2, dim=-1)  # (..., hd/2) each
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin
