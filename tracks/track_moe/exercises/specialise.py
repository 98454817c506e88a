"""Track MoE exercise, a routing metric: how spread is the load over the experts?

A router that balances well sends each expert about the same number of (token, expert)
pairs; a collapsed router sends nearly every token to the same few experts, and the rest
never train. ``track_moe.specialise`` (read its module docstring) records the load per step
during training and plots the entropy of the load distribution; ``routing_entropy`` is that
metric.

Fill in ``routing_entropy``, then run the track's exercise command (README).
"""

from __future__ import annotations

import torch


def routing_entropy(load: torch.Tensor) -> float:
    """load (N,) pairs (or any non-negative weights) per expert -> entropy in bits, a float.

    1. p = load / load.sum() (in float64, for a stable sum).
    2. H = -sum_i p_i log2 p_i, with 0 * log2 0 taken as 0 (drop the empty experts first).
    With N experts and k chosen per token: H = log2 N when balanced, log2 k when every
    token picks the same k experts.
    """
    raise NotImplementedError("not implemented yet: routing_entropy (-sum p log2 p over the "
                              "non-empty experts)")
