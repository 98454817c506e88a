"""Worked solution: InfLoRA's design of A (rows in the complement of the old input subspace)."""

from __future__ import annotations

import torch


def inflora_subspace(X: torch.Tensor, M: torch.Tensor | None, r: int) -> torch.Tensor:
    dim = X.shape[1]
    if M is None or M.shape[1] == 0:
        Q = torch.eye(dim, dtype=X.dtype)
    else:
        Q = torch.linalg.svd(M, full_matrices=True)[0][:, M.shape[1]:].to(X.dtype)
    out = torch.zeros(r, dim, dtype=X.dtype)
    if Q.shape[1] == 0:
        return out
    Vh = torch.linalg.svd(X @ Q, full_matrices=False)[2]  # rows: directions in Q's coordinates
    k = min(r, Vh.shape[0])
    out[:k] = (Q @ Vh[:k].t()).t()
    return out
