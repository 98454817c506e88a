"""Worked solution: every row's LoRA stack by one gather (see ../bank.py for the exercise)."""

from __future__ import annotations

import torch


def gather_adapters(A_pool: torch.Tensor, B_pool: torch.Tensor, slots: torch.Tensor,
                    weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (B, S*R, in), B^T (B, S*R, out)); see ../bank.py."""
    Bsz = slots.size(0)
    a = A_pool[slots].reshape(Bsz, -1, A_pool.size(-1))  # (B, S*R, in)
    b = B_pool[slots]  # (B, S, out, R)
    if weights is not None:
        b = b * weights[:, :, None, None].to(B_pool.dtype)
    return a, b.transpose(2, 3).reshape(Bsz, -1, B_pool.size(1))  # (B, S*R, out)
