"""Per-token and per-sequence log-probabilities: what DPO and GRPO are computed from.

``token_logprobs(model, ids)`` is log p(ids[:, t + 1] | ids[:, : t + 1]) for
every position, in fp32, from one forward over ``ids[:, :-1]``; extra keyword
arguments (``segments=`` for packed rows, ``pad=`` for left padding) go to the
model's forward. ``temperature`` divides the logits first, as TRL's GRPO does
when it scores the completions it sampled at that temperature.
``sequence_logprobs(model, ids, mask)`` sums them over the tokens a 0/1 mask
marks (a completion's tokens): DPO's log pi(y | x).

The layout every caller uses: a row is prompt then completion, right-padded;
``mask[b, t] = 1`` where token t belongs to the completion (and is not
padding); the log-prob of token t sits at index t - 1 of ``token_logprobs``,
so the matching mask is ``mask[:, 1:]``.

Left out: chunking over the vocabulary (a fused cross-entropy head); the
logits of a tiny CPU model fit in memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_logprobs(model, ids: torch.Tensor, temperature: float = 1.0, **forward) -> torch.Tensor:
    """(B, T - 1) fp32: the log-probability of each token of ``ids`` (B, T) after the ones
    before it. ``forward`` keyword arguments (``segments``, ``pad``) are sliced like the input
    when they are (B, T) tensors and passed to ``model``."""
    if ids.dim() != 2 or ids.size(1) < 2:
        raise ValueError(f"ids must be (B, T) with T >= 2, got shape {tuple(ids.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    kw = {k: (v[:, :-1] if isinstance(v, torch.Tensor) and v.shape == ids.shape else v)
          for k, v in forward.items() if v is not None}
    logits = model(ids[:, :-1], **kw).float()  # (B, T-1, V)
    if temperature != 1.0:
        logits = logits / temperature
    targets = ids[:, 1:]  # (B, T-1)
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return -nll.view_as(targets)  # (B, T-1)


def sequence_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0,
                      **forward) -> torch.Tensor:
    """(B,) fp32: the summed log-probability of the tokens ``mask`` (B, T) marks with 1."""
    if mask.shape != ids.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal ids shape {tuple(ids.shape)}")
    lp = token_logprobs(model, ids, temperature, **forward)  # (B, T-1)
    return (lp * mask[:, 1:].to(lp.dtype)).sum(dim=1)  # (B,)
