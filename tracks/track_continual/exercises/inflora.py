"""Track exercise, InfLoRA: design A so that a new task cannot disturb the old ones.

An adapter's update dW = s B A changes a layer's output on x by s B (A x). If A's rows
are orthogonal to the subspace spanned by the old tasks' inputs to this layer (the memory
M), then A x = 0 on those inputs: whatever B learns, the old tasks see no change. InfLoRA
fixes such an A before the task and trains only B (read
``tracks/track_continual/src/track_continual/inflora.py``).

Fill in ``inflora_subspace``; ``complement_basis`` below is given.
"""

from __future__ import annotations

import torch


def complement_basis(M: torch.Tensor | None, dim: int) -> torch.Tensor:
    """An orthonormal basis (dim, dim - k) of the orthogonal complement of span(M) (dim, k)."""
    if M is None or M.shape[1] == 0:
        return torch.eye(dim)
    U, _, _ = torch.linalg.svd(M, full_matrices=True)
    return U[:, M.shape[1]:]


def inflora_subspace(X: torch.Tensor, M: torch.Tensor | None, r: int) -> torch.Tensor:
    """A (r, in) for the new task's inputs X (N, in) and the old memory M (in, k) or None.

    1. Q = complement_basis(M, in): (in, c), the directions the old tasks do not use.
       Use X's dtype for everything you return.
    2. The new inputs in those coordinates: Xc = X @ Q, (N, c).
    3. The top right singular vectors of Xc (``torch.linalg.svd(Xc, full_matrices=False)``,
       rows of Vh) are the strongest directions of the new task inside the complement;
       map the first k = min(r, rows of Vh) back to R^in: Vh[:k] @ Q^T, (k, in).
    4. Return them as the first k rows of an (r, in) zero matrix; if the complement is
       empty (c == 0) return all zeros. Rows are then orthonormal and A @ M = 0.
    """
    raise NotImplementedError("not implemented yet: inflora_subspace (InfLoRA's design of A)")
