"""Track exercise, O-LoRA: keep a new task's adapter orthogonal to the old ones.

O-LoRA (``tracks/track_continual/src/track_continual/olora.py``, read its docstring) gives
every task its own LoRA adapter and keeps all of them active. While task t trains, the
loss adds, per layer, a penalty on how much the new adapter's A (the input directions its
update reads) overlaps the A of every earlier adapter. The strategy calls
``orthogonality_loss`` once per layer per step.

Fill it in, then run the track's exercises (README, "Exercises"); IMPL=solutions runs
the worked one.
"""

from __future__ import annotations

import torch


def orthogonality_loss(A_new: torch.Tensor, A_olds: list[torch.Tensor]) -> torch.Tensor:
    """sum_i ||A_new A_i^T||_F^2, a scalar.

    A_new: (r, in), the adapter that trains; A_olds: a list of (r_i, in), the earlier
    adapters' A on the same layer (constants: no gradient may reach them).

    1. Start from a zero scalar on A_new's device and dtype (an empty list gives 0).
    2. For every old A_i: the overlap A_new @ A_i^T is (r, r_i); entry (a, b) is the dot
       product of row a of A_new with row b of A_i. Detach A_i first.
    3. Add the sum of the squared entries (the squared Frobenius norm).
    Its gradient, 2 sum_i (A_new A_i^T) A_i, is what autograd must give.
    """
    raise NotImplementedError("not implemented yet: orthogonality_loss (O-LoRA's penalty)")
