"""Worked solution: Arrow's per-token routing weights (see ../routing.py for the exercise)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def coefficients(self, tok: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """(t, E) routing weights of tokens (t, in) over prototypes (E, in); see ../routing.py."""
    sim = (tok @ protos.T).abs()  # (t, E)
    top, idx = sim.topk(self.top_k, dim=1)
    score = torch.full_like(sim, float("-inf")).scatter(1, idx, top)
    return F.softmax(score / self.temperature, dim=1)  # (t, E)
