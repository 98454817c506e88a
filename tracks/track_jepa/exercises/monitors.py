"""Track JEPA exercise: RankMe, the effective rank of a batch of embeddings.

A joint-embedding model can collapse: all inputs mapped into a few directions. RankMe
(Garrido et al. 2023) measures how many directions the embeddings really use, without
labels: ``exp`` of the entropy of the normalised singular values. The experiments report it
for every encoder. Fill it in, then run ``make trackjepa-exercises``.
"""

from __future__ import annotations

import torch


def rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    """z (n, D) -> a float in [1, min(n, D)].

    1. the singular values ``s`` of z (``torch.linalg.svdvals``, in float64);
    2. ``p = s / s.sum() + eps`` (eps keeps log away from 0);
    3. return ``exp(-sum(p * log p))`` as a Python float.
    """
    raise NotImplementedError("not implemented yet: rankme (singular values, normalise, "
                              "exp of the entropy)")
