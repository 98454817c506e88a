"""Week 11 exercise, data parallelism: average the step's metrics over the ranks.

Under DDP every rank computes the loss of its own rows of the global batch; the gradients
are averaged by DDP's all-reduce, but the loss the Trainer logs is still this rank's alone.
One process with the whole batch would log the mean over every row: with equal rows per
rank that is the mean of the ranks' means. ``all_mean`` makes it so, for every scalar the
step logs (loss, grad norm's companions, a loss_fn's metrics), in ONE collective: pack the
values into one float64 tensor, ``torch.distributed.all_reduce`` it with ``ReduceOp.SUM``,
divide by the world size, unpack.

Fill in ``all_mean``, then run ``make week11-exercises`` (``IMPL=solutions`` runs the worked
one). It replaces ``week11_scale.launch.all_mean`` (and the trainer's name for it), also in
the torchrun workers, while the DDP / FSDP2 / ZeRO-1 equality test runs: two ranks must log
exactly the losses one process logs on the same global batch.
"""

from __future__ import annotations

import torch  # noqa: F401  (yours to use)
import torch.distributed as dist  # noqa: F401  (yours to use)


def all_mean(values: dict) -> dict:
    """``{name: float}`` averaged over the ranks (every rank passes the same keys, in the same
    order); the values may be floats or one-element tensors. Without a process group, or with
    one rank, return the values as floats. On a CPU (gloo) group the tensor lives on the CPU;
    on NCCL it must be on this rank's CUDA device (``torch.cuda.current_device()``)."""
    raise NotImplementedError("not implemented yet: all_mean (one all_reduce of the values, "
                              "then divide by the world size)")
