"""What one training step computes: the default next-token loss, and moving a batch.

``Trainer(loss_fn=...)`` calls ``loss_fn(model, batch) -> (loss, metrics)``
on every micro-batch: ``loss`` is the scalar to minimise (auxiliary terms
such as an MoE balance loss, an EWC penalty or a KL to a reference model are
added into it by the loss_fn) and ``metrics`` a dict of floats or scalar
tensors logged beside it. The default, ``next_token_loss``, is the
cross-entropy of the model's next-token logits on an ``(x, y)`` batch.

Targets: ``y == IGNORE_INDEX`` (-1, from ``shared``) is not trained. It is the
project's only mask value; ``token_cross_entropy`` refuses any other negative
target (PyTorch's default -100, say) with a ValueError instead of guessing.
Code that hands targets to Hugging Face or TRL converts to -100 there.

``to_device`` moves every tensor inside a batch (tuples, lists, dicts,
nested) to a device and leaves anything else as it is.

Left out: label smoothing and z-loss; a loss_fn adds them when wanted.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared import IGNORE_INDEX

__all__ = ["next_token_loss", "token_cross_entropy", "check_targets", "to_device"]


def check_targets(y: torch.Tensor) -> None:
    """Raise ValueError when ``y`` holds a negative target other than ``IGNORE_INDEX``."""
    bad = (y < 0) & (y != IGNORE_INDEX)
    if bool(bad.any()):
        values = sorted({int(v) for v in y[bad].unique()[:5]})
        raise ValueError(f"targets hold negative values {values}; the only mask value is "
                         f"shared.IGNORE_INDEX = {IGNORE_INDEX} (convert PyTorch's -100 with "
                         f"y.masked_fill(y == -100, {IGNORE_INDEX}))")


def token_cross_entropy(logits: torch.Tensor, y: torch.Tensor,
                        reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of ``logits`` (B, T, V) against ``y`` (B, T), in fp32, skipping
    ``IGNORE_INDEX``. ``reduction="none"`` gives (B*T,) nats (0 where skipped)."""
    check_targets(y)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction=reduction)


def next_token_loss(model, batch) -> tuple[torch.Tensor, dict]:
    """The Trainer's default loss_fn: ``batch = (x, y)``, mean cross-entropy, no metrics."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"the default loss_fn takes (x, y) batches, got {type(batch).__name__}; "
                        "pass loss_fn=... to the Trainer for other batches")
    x, y = batch
    return token_cross_entropy(model(x), y), {}                      # logits (B, T, V)


def to_device(batch, device: torch.device):
    """``batch`` with every tensor in it (tuples, lists, dicts, nested) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):      # a namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
