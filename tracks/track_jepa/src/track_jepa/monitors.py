"""Collapse monitors: is the representation still using its dimensions?

A joint-embedding method can cheat by mapping every input to the same vector
(complete collapse) or to a low-dimensional subspace (dimensional collapse);
its loss is then low and its features useless. Two numbers catch it:

- ``embedding_std``: the standard deviation over the batch of each dimension of
  the L2-normalised embeddings, averaged over dimensions (SimSiam's monitor,
  Chen & He 2021). Complete collapse gives 0; well-spread embeddings of width D
  give about ``1 / sqrt(D)``.
- ``rankme``: the effective rank of a batch of embeddings (Garrido et al. 2023,
  RankMe): ``exp`` of the entropy of the singular values normalised to sum to 1.
  Between 1 (one direction) and ``min(n, D)`` (all singular values equal).

Left out: the covariance/variance terms of VICReg (regularisers, not monitors).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["embedding_std", "rankme", "std_floor"]

# ---------------------------------------------------------------------------


def embedding_std(z: torch.Tensor) -> float:
    """z (n, D) -> mean over D of the std over n of ``normalize(z)``; 0 when collapsed."""
    z = F.normalize(z.float(), dim=-1)             # (n, D), unit rows
    return float(z.std(dim=0).mean())


def std_floor(dim: int, fraction: float = 0.25) -> float:
    """A collapse alarm for ``embedding_std``: ``fraction`` of the ``1/sqrt(dim)`` of
    isotropic unit vectors."""
    return fraction / dim ** 0.5


def rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    """z (n, D) -> the effective rank ``exp(-sum_k p_k log p_k)``, p = sigma / sum(sigma) + eps.

    ``eps`` as in the RankMe paper keeps log(0) away; the result is in [1, min(n, D)].
    """
    s = torch.linalg.svdvals(z.double())           # (min(n, D),)
    p = s / s.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))
