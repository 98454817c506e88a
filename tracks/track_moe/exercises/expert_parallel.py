"""Track MoE exercise, expert parallelism: the dispatch plan behind the all-to-all.

With experts sharded over W ranks (rank r owns experts r*N/W .. (r+1)*N/W - 1), every rank
must send each of its (token, expert) pairs to the rank that owns the expert. The layer
(``tracks/track_moe/src/track_moe/expert_parallel.py``, read its module docstring) does it
with one ``all_to_all_single``: it needs the rows to send laid out rank by rank, and how
many rows go to each rank. ``dispatch_plan`` computes that layout; the layer calls it on
every forward, then exchanges counts, rows, runs its local experts and sends the results back.

Fill in ``dispatch_plan`` below, then run the track's exercise command (README); it replaces
``track_moe.expert_parallel.dispatch_plan`` in this process and in the two gloo ranks the
parity test starts.
"""

from __future__ import annotations

import torch

from track_moe.expert_parallel import DispatchPlan


def dispatch_plan(idx: torch.Tensor, n_experts: int, world_size: int) -> DispatchPlan:
    """idx (S, k) chosen experts per token -> ``DispatchPlan(order, tokens, expert_counts, send_counts)``.

    Number the S*k pairs token-major: pair p is token p // k's (p % k)-th choice, i.e. the
    pair ids index ``idx.reshape(-1)``.

    1. ``order`` (S*k,): the pair ids sorted by their expert, *stably* (pairs of one expert
       keep their id order: ``torch.argsort(..., stable=True)``). Because rank r owns a block
       of consecutive experts, this also groups the pairs by destination rank.
    2. ``tokens`` (S*k,): the token of each pair in ``order`` (integer division by k).
    3. ``expert_counts`` (N,): how many pairs chose each expert (``torch.bincount`` with
       ``minlength``).
    4. ``send_counts`` (W,): pairs per destination rank: the expert counts summed over each
       rank's block of N // W experts.
    """
    raise NotImplementedError("not implemented yet: dispatch_plan (stable sort of the pairs "
                              "by expert, their tokens, counts per expert and per rank)")
