"""Worked solution: RankMe."""

from __future__ import annotations

import math

import torch


def rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    s = torch.linalg.svdvals(z.to(torch.float64))
    p = s / s.sum() + eps
    return math.exp(float(-(p * torch.log(p)).sum()))
