"""Week 05 exercises, bits per byte: the worked ``bits_per_byte`` (see ``../bpb.py``)."""

import math

import torch


def bits_per_byte(nats: torch.Tensor, targets: torch.Tensor, token_bytes: torch.Tensor) -> float:
    """``sum(nats) / (ln 2 * token_bytes[targets].sum())``, negative targets dropped."""
    if nats.shape != targets.shape:
        raise ValueError(f"nats {tuple(nats.shape)} and targets {tuple(targets.shape)} must have "
                         "the same shape")
    nats, targets = nats.detach().reshape(-1).double(), targets.reshape(-1)    # (N,) each
    keep = targets >= 0                                                          # (N,) bool
    nats, targets = nats[keep], targets[keep]                                    # (M,) each
    nbytes = int(token_bytes.to(targets.device)[targets].sum())
    if nbytes <= 0:
        raise ValueError("the targets cover 0 bytes (only special tokens?): bits per byte is "
                         "undefined")
    return float(nats.sum()) / (math.log(2) * nbytes)
