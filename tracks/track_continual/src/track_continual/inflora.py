"""InfLoRA (Liang & Li 2024, arXiv:2404.00228): interference-free low-rank adaptation.

A LoRA update of one layer is dW = s B A (A (r, in), B (out, r)); its effect on an
input x is s B (A x). If every row of A is orthogonal to the subspace that the old
tasks' inputs of this layer span, A x = 0 for those inputs and the new task cannot
change the layer's output on them, whatever B learns. InfLoRA therefore *designs* A
before a task and trains only B:

1. ``collect_inputs``: run the new task's training inputs through the model and keep
   each target layer's input vectors, X (N, in) (forward pre-hooks on week06's
   ``LoRALinear``);
2. ``inflora_subspace(X, M, r)``: project X onto the orthogonal complement of the old
   input subspace M (in, k) (orthonormal columns) and take the top-r right singular
   vectors of the projection, A = V_r^T (r, in): the directions of the new task's
   inputs that the old tasks do not use. A is built from a basis of that complement,
   so A M = 0 holds to rounding even where the new inputs lie inside span(M);
3. train B only (A frozen);
4. ``update_memory(M, X, threshold)``: after the task, add to M the fewest new
   directions of the task's inputs (the residual outside M) that bring the captured
   energy of X to ``threshold`` (GPM's rule, Saha et al. 2021, which InfLoRA uses).

Every adapter stays active (no task id). ``InfLoRAHooks`` runs this inside week07's
``run_stream``.

Left out: the paper's design of A from the gradient of the new task (it uses the input
subspace, as here, in its practical form), its classifier-alignment for
class-incremental vision, and attention's per-head structure (inputs are per layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from track_continual import common
from week06_lora import LoRALinear
from week07_continual import StreamHooks, collate

# ---------------------------------------------------------------- inputs of each layer


@torch.no_grad()
def collect_inputs(model, layers: dict[str, LoRALinear], examples: list[dict],
                   batch_size: int = 32, max_rows: int = 2048) -> dict[str, torch.Tensor]:
    """Each layer's input vectors on ``examples``: ``{name: X (N, in)}`` (real tokens only)."""
    got: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    keep = {"mask": None}

    def hook(name):
        def pre(module, args):
            x = args[0]  # (B, T, in)
            got[name].append(x[keep["mask"]].detach().float())  # (n, in)
        return pre

    handles = [layer.register_forward_pre_hook(hook(n)) for n, layer in layers.items()]
    was = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        for s in range(0, len(examples), batch_size):
            chunk = examples[s:s + batch_size]
            x, _ = collate(chunk, None, device)  # (B, T)
            lengths = torch.tensor([len(e["ids"]) - 1 for e in chunk], device=device)
            keep["mask"] = torch.arange(x.shape[1], device=device)[None, :] < lengths[:, None]
            model(x)
            if sum(t.shape[0] for t in got[next(iter(got))]) >= max_rows:
                break
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {n: torch.cat(v)[:max_rows] for n, v in got.items()}


# ---------------------------------------------------------------- the subspace


def complement_basis(M: torch.Tensor | None, dim: int) -> torch.Tensor:
    """An orthonormal basis (dim, dim - k) of the orthogonal complement of span(M) (dim, k)."""
    if M is None or M.shape[1] == 0:
        return torch.eye(dim)
    U, _, _ = torch.linalg.svd(M, full_matrices=True)  # (dim, dim); first k columns span M
    return U[:, M.shape[1]:]


def inflora_subspace(X: torch.Tensor, M: torch.Tensor | None, r: int) -> torch.Tensor:
    """A (r, in): orthonormal rows, orthogonal to span(M), the top-r directions of X
    (N, in) outside span(M); zero rows where the complement has fewer than r dimensions."""
    Q = complement_basis(M, X.shape[1])  # (in, c)
    A = X.new_zeros(r, X.shape[1])
    if Q.shape[1] == 0:
        return A
    Xc = X @ Q  # (N, c): X's coordinates in the complement
    _, _, Vh = torch.linalg.svd(Xc, full_matrices=False)  # Vh (min(N, c), c)
    k = min(r, Vh.shape[0])
    A[:k] = Vh[:k] @ Q.t()  # (k, in)
    return A


def update_memory(M: torch.Tensor | None, X: torch.Tensor, threshold: float = 0.95) -> torch.Tensor:
    """span(M) grown by the fewest residual directions of X so that the part of X's energy
    (squared Frobenius norm) inside it reaches ``threshold``; returns M (in, k') orthonormal."""
    dim = X.shape[1]
    M = X.new_zeros(dim, 0) if M is None else M
    total = X.pow(2).sum()
    inside = (X @ M).pow(2).sum()
    if total == 0 or inside / total >= threshold:
        return M
    R = X - (X @ M) @ M.t()  # (N, in): the residual outside span(M)
    _, S, Vh = torch.linalg.svd(R, full_matrices=False)
    need, add = threshold * total - inside, 0
    for s in S:
        if need <= 0 or M.shape[1] + add >= dim:
            break
        need, add = need - s ** 2, add + 1
    new = torch.cat([M, Vh[:add].t()], dim=1)  # (in, k + add)
    Q, _ = torch.linalg.qr(new)  # re-orthonormalise against rounding
    return Q


# ---------------------------------------------------------------- the strategy


@dataclass
class InfLoRAConfig:
    r: int = 8
    alpha: float = 16.0
    threshold: float = 0.95  # GPM's energy threshold for the memory
    examples: int = 64  # training examples whose inputs define the subspaces
    head: bool = True
    lr: float | None = 3e-3


class InfLoRAHooks(StreamHooks):
    """InfLoRA inside week07's ``run_stream``: A designed and frozen, B trained, memory grown."""

    def __init__(self, cfg: InfLoRAConfig | None = None):
        self.cfg = cfg or InfLoRAConfig()
        self.lr = self.cfg.lr
        self.names: list[str] = []
        self.memory: dict[str, torch.Tensor] = {}
        self.model = None

    def _inputs(self, model, layers, task, rng):
        exs = [task.train[rng.randrange(len(task.train))] for _ in range(self.cfg.examples)]
        return collect_inputs(model, layers, exs)

    def before_task(self, model, i, task, rng):
        name = f"inflora{i}"
        layers = common.add_task_adapter(model, name, self.cfg.r, self.cfg.alpha,
                                         common.lora_targets(model, self.cfg.head))
        X = self._inputs(model, layers, task, rng)
        for n, layer in layers.items():
            ad = layer.lora[name]
            with torch.no_grad():
                ad.A.copy_(inflora_subspace(X[n], self.memory.get(n), self.cfg.r).to(ad.A))
            ad.A.requires_grad_(False)  # only B trains
        self.names.append(name)
        self.layers, self.model = layers, model

    def after_task(self, model, i, task, rng):
        X = self._inputs(model, self.layers, task, rng)
        for n in self.layers:
            self.memory[n] = update_memory(self.memory.get(n), X[n], self.cfg.threshold)

    def nbytes(self) -> int:
        mem = sum(M.numel() * M.element_size() for M in self.memory.values())
        return mem + (common.adapter_bytes(self.model, self.names) if self.model is not None else 0)

    def details(self) -> dict:
        return {"adapters": list(self.names),
                "memory_dims": {n: int(M.shape[1]) for n, M in self.memory.items()}}
