"""Worked solution: O-LoRA's orthogonality loss."""

from __future__ import annotations

import torch


def orthogonality_loss(A_new: torch.Tensor, A_olds: list[torch.Tensor]) -> torch.Tensor:
    if not A_olds:
        return A_new.sum() * 0.0
    old = torch.cat([a.detach() for a in A_olds], dim=0)  # (sum r_i, in)
    return torch.linalg.matrix_norm(A_new @ old.t()) ** 2  # one Frobenius norm over all
