"""Pick the adapter for an input without being told its task: nearest centroid of hidden states.

Every task leaves a prototype: the mean of the *base* model's final hidden
state (after the last norm, mean-pooled over the prompt's tokens) over its
training prompts. At test time the same embedding of an input is compared
with every prototype by cosine similarity, after subtracting the mean of all
embeddings seen so far (centering removes the direction every input shares,
which would otherwise dominate the cosine). The nearest prototype's adapter
wins, unless its similarity is below ``threshold``: then the input is
nobody's, and the base model answers (``None``).

The base model is frozen under LoRA-per-task, so prototypes never go stale:
a prototype computed after task 1 is still valid after task 10.

Left out: learned routers (a classifier head, mixture-of-LoRA gating),
several prototypes per task (k-means) and per-token routing.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from week06_lora import lora_layers

# ---------------------------------------------------------------- embeddings


@contextlib.contextmanager
def base_only(model: nn.Module):
    """Inside the block every LoRA layer runs without adapters (merged ones cannot be removed)."""
    layers = list(lora_layers(model).values())
    saved = [(layer.active, layer.batch_adapters) for layer in layers]
    for layer in layers:
        if layer.merged:
            raise RuntimeError("base_only needs unmerged adapters; merged: "
                               f"{layer.merged}")
        layer.active, layer.batch_adapters = [], None
    try:
        yield model
    finally:
        for layer, (active, batch) in zip(layers, saved):
            layer.active, layer.batch_adapters = active, batch


def _feature_module(model: nn.Module) -> nn.Module:
    for name in ("ln_f", "norm", "final_norm"):
        m = getattr(model, name, None)
        if isinstance(m, nn.Module):
            return m
    raise ValueError(f"{type(model).__name__} has no final norm (ln_f / norm / final_norm) to read "
                     "hidden states from; pass feature_module=")


@torch.no_grad()
def embed_sequences(model: nn.Module, seqs: list[list[int]], batch_size: int = 64,
                    feature_module: nn.Module | None = None) -> torch.Tensor:
    """(N, C): the base model's final hidden states, mean-pooled over each sequence's tokens."""
    if not seqs or any(len(s) == 0 for s in seqs):
        raise ValueError("embed_sequences needs a non-empty list of non-empty token sequences")
    module = feature_module or _feature_module(model)
    captured = {}
    handle = module.register_forward_hook(lambda m, i, out: captured.__setitem__("h", out))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        with base_only(model):
            for s in range(0, len(seqs), batch_size):
                chunk = seqs[s:s + batch_size]
                T = max(len(q) for q in chunk)
                idx = torch.zeros(len(chunk), T, dtype=torch.long, device=device)  # right padding:
                valid = torch.zeros(len(chunk), T, device=device)  # causal, so it changes nothing
                for b, q in enumerate(chunk):
                    idx[b, :len(q)] = torch.tensor(q)
                    valid[b, :len(q)] = 1.0
                model(idx)
                h = captured["h"].float()  # (B, T, C)
                out.append((h * valid[..., None]).sum(1) / valid.sum(1, keepdim=True))  # (B, C)
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(out)


# ---------------------------------------------------------------- the router


class PrototypeRouter:
    """Nearest-centroid routing over task prototypes with a confidence threshold."""

    def __init__(self, threshold: float = 0.0):
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"router threshold is a cosine similarity in [-1, 1], got {threshold}")
        self.threshold = threshold
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None  # (K, C): sum of each task's embeddings
        self.counts: torch.Tensor | None = None  # (K,)

    def add(self, name: str, embeddings: torch.Tensor) -> None:
        """Add (or extend) the prototype of ``name`` with embeddings (N, C)."""
        e = embeddings.detach().float().cpu()
        if e.dim() != 2 or e.size(0) == 0:
            raise ValueError(f"embeddings must be (N, C) with N > 0, got {tuple(e.shape)}")
        if self.sums is None:
            self.sums, self.counts = torch.zeros(0, e.size(1)), torch.zeros(0)
        if e.size(1) != self.sums.size(1):
            raise ValueError(f"embeddings have {e.size(1)} channels, the router holds "
                             f"{self.sums.size(1)}")
        if name not in self.names:
            self.names.append(name)
            self.sums = torch.cat([self.sums, torch.zeros(1, e.size(1))])
            self.counts = torch.cat([self.counts, torch.zeros(1)])
        k = self.names.index(name)
        self.sums[k] += e.sum(0)
        self.counts[k] += e.size(0)

    def similarities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N, K) cosine similarity of each centred embedding to each centred prototype."""
        if not self.names:
            raise ValueError("the router has no prototypes yet: add() a task first")
        center = self.sums.sum(0) / self.counts.sum()  # (C,) mean of every embedding seen
        protos = self.sums / self.counts[:, None] - center  # (K, C)
        e = embeddings.detach().float().cpu() - center  # (N, C)
        return F.normalize(e, dim=-1) @ F.normalize(protos, dim=-1).T

    def route(self, embeddings: torch.Tensor) -> tuple[list[str | None], torch.Tensor]:
        """The adapter name per row (``None``: below threshold, use the base) and its similarity."""
        if not self.names:
            return [None] * embeddings.size(0), torch.zeros(embeddings.size(0))
        if len(self.names) == 1:  # centring leaves one prototype at the origin: use raw cosine
            sims = F.normalize(embeddings.float().cpu(), dim=-1) @ F.normalize(
                self.sums / self.counts[:, None], dim=-1).T
        else:
            sims = self.similarities(embeddings)
        conf, k = sims.max(dim=1)
        names = [self.names[i] if c >= self.threshold else None for i, c in zip(k.tolist(), conf)]
        return names, conf

    # -- state (for the adapter store)
    def state(self) -> dict:
        return {"names": list(self.names), "threshold": self.threshold,
                "sums": self.sums if self.sums is not None else torch.zeros(0, 0),
                "counts": self.counts if self.counts is not None else torch.zeros(0)}

    @classmethod
    def from_state(cls, state: dict) -> PrototypeRouter:
        r = cls(float(state["threshold"]))
        r.names = list(state["names"])
        if r.names:
            r.sums, r.counts = state["sums"].float(), state["counts"].float()
        return r

    def nbytes(self) -> int:
        return 0 if self.sums is None else 4 * (self.sums.numel() + self.counts.numel())
