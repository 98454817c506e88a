"""O-LoRA (Wang et al. 2023, arXiv:2310.14152): each task's adapter learns in a subspace
orthogonal to the earlier tasks' adapters.

Every task t gets a fresh LoRA adapter (A_t, B_t) on every target layer; the earlier
adapters stay in the model, frozen and active, so the model is W + sum_t s B_t A_t and
needs no task id. While task t trains, the loss adds, per layer,

    L_orth = sum_{i < t} || A_t A_i^T ||_F^2        A_t (r, in), A_i (r_i, in)

which pushes the rows of A_t (the input directions the new update reads) away from
the rows of every old A_i: an input direction an old task's update reads is then not
read by the new one. ``orthogonality_loss`` is that sum and ``orthogonality_grad`` its
gradient, d L / d A_t = 2 sum_i (A_t A_i^T) A_i, derived by hand and tested against
autograd. The paper's l2 penalty on the new adapter (lambda_2) is ``l2``.

``OLoRAHooks`` plugs this into week07's ``run_stream`` (``StreamHooks``): before a task
it adds the adapter, its loss_fn adds ``lam * L_orth`` (summed over layers) to week07's
loss and logs it.

Left out: the paper's instruction-following prompts (the model is tiny) and its
merging of the orthogonal adapters into the base after training (the sum is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from track_continual import common
from week07_continual import StreamHooks

# ---------------------------------------------------------------- the loss


def orthogonality_loss(A_new: torch.Tensor, A_olds: list[torch.Tensor]) -> torch.Tensor:
    """sum_i ||A_new A_i^T||_F^2; A_new (r, in), each A_i (r_i, in) (constants)."""
    total = A_new.new_zeros(())
    for A_old in A_olds:
        overlap = A_new @ A_old.detach().t()  # (r, r_i)
        total = total + (overlap ** 2).sum()
    return total


def orthogonality_grad(A_new: torch.Tensor, A_olds: list[torch.Tensor]) -> torch.Tensor:
    """d/dA_new of ``orthogonality_loss``: 2 sum_i (A_new A_i^T) A_i, shape (r, in)."""
    g = torch.zeros_like(A_new)
    for A_old in A_olds:
        g = g + 2 * (A_new @ A_old.t()) @ A_old  # (r, r_i) @ (r_i, in)
    return g


# ---------------------------------------------------------------- the strategy


@dataclass
class OLoRAConfig:
    r: int = 8
    alpha: float = 16.0
    lam: float = 0.5  # lambda_1: weight of the orthogonality loss
    l2: float = 0.0  # lambda_2: l2 on the new adapter's A and B
    head: bool = True
    lr: float | None = 3e-3


class OLoRAHooks(StreamHooks):
    """O-LoRA inside week07's ``run_stream``: an orthogonal adapter per task, all summed."""

    def __init__(self, cfg: OLoRAConfig | None = None):
        self.cfg = cfg or OLoRAConfig()
        self.lr = self.cfg.lr
        self.names: list[str] = []
        self.layers: dict = {}
        self.model = None

    def before_task(self, model, i, task, rng):
        name = f"olora{i}"
        self.layers = common.add_task_adapter(model, name, self.cfg.r, self.cfg.alpha,
                                              common.lora_targets(model, self.cfg.head))
        self.names.append(name)
        self.model = model

    def penalty(self) -> torch.Tensor:
        """lam * sum over layers of L_orth (plus l2 on the new adapter)."""
        new = self.names[-1]
        total = next(iter(self.layers.values())).lora[new].A.new_zeros(())
        for layer in self.layers.values():
            ad = layer.lora[new]
            olds = [layer.lora[n].A for n in self.names[:-1] if n in layer.lora]
            total = total + self.cfg.lam * orthogonality_loss(ad.A, olds)
            if self.cfg.l2:
                total = total + self.cfg.l2 * (ad.A.pow(2).sum() + ad.B.pow(2).sum())
        return total

    def loss_fn(self, default):
        def loss(model, batch):
            base, metrics = default(model, batch)
            pen = self.penalty()
            return base + pen, {**metrics, "task_loss": base.detach(), "orth_loss": pen.detach()}
        return loss

    def nbytes(self) -> int:
        return common.adapter_bytes(self.model, self.names) if self.model is not None else 0

    def details(self) -> dict:
        return {"adapters": list(self.names)}
