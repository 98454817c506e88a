"""Worked solution: the causal softmax attention weights (week01 exercises)."""

from __future__ import annotations

import math

import torch


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None,
                      causal: bool = True, scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale, with unreadable keys at -inf) over the keys: (B, H, Tq, Tk)."""
    Tq, Tk = q.size(-2), k.size(-2)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    if mask is None and causal:
        # query i is position Tk - Tq + i: it reads keys 0 .. Tk - Tq + i
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)  # (Tq, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)  # rows sum to 1; masked entries exactly 0
