"""Week 11 exercise, Muon under FSDP2: orthogonalise a sharded matrix.

FSDP2 keeps each weight matrix as a DTensor: rank r holds rows r*m/W .. (r+1)*m/W of it
(``Shard(0)``). Muon's update is NS(u), the Newton-Schulz orthogonalisation of the whole
(m, n) momentum update, and NS is not row-wise: the orthogonal factor of a matrix is not the
stack of its row blocks' factors. So each rank must see the whole u: gather it
(``u.full_tensor()``), run week03's ``newton_schulz`` on it (every rank gets the same
answer), and hand back only this rank's rows as a DTensor with u's mesh and placements
(``torch.distributed.tensor.distribute_tensor(o, u.device_mesh, u.placements,
src_data_rank=None)``: each rank slices its own piece, no communication).

Fill in ``orthogonalize``, then run ``make week11-exercises``. It replaces
``week11_scale.trainer.ShardedMuon.orthogonalize`` (in the torchrun workers too) while the
Muon test runs: FSDP2 on two ranks must train like Muon in one process.
"""

from __future__ import annotations

import torch

from week03_training.optim import newton_schulz  # noqa: F401  (yours to use)


def orthogonalize(self, u: torch.Tensor, group: dict) -> torch.Tensor:
    """NS(u) for one matrix update; ``u`` may be a plain tensor (DDP, one process: use
    ``newton_schulz(u, steps=group["ns_steps"], dtype=self.ns_dtype)``) or an FSDP2 DTensor
    shard (gather, orthogonalise, keep this rank's rows, as above)."""
    raise NotImplementedError("not implemented yet: orthogonalize (full_tensor, newton_schulz, "
                              "distribute_tensor back to u's placements)")
