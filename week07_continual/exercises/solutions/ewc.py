"""Worked solutions: the diagonal Fisher and the EWC penalty (week07)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F


def fisher_diagonal(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    mode: str = "true", samples: int = 1, max_examples: int | None = None,
                    generator: torch.Generator | None = None,
                    progress: bool = False) -> dict[str, torch.Tensor]:
    """Per row: the squared gradient of its summed log-likelihood, averaged over draws and rows."""
    if mode not in ("true", "empirical"):
        raise ValueError(f"fisher mode must be 'true' or 'empirical', got {mode!r}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameters: nothing to estimate a Fisher for")
    total = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    draws = samples if mode == "true" else 1
    count = 0
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            for b in range(x.size(0)):
                if max_examples is not None and count >= max_examples:
                    break
                xb, yb = x[b:b + 1], y[b:b + 1]  # (1, T)
                scored = yb >= 0  # (1, T)
                if not bool(scored.any()):
                    continue
                for _ in range(draws):
                    logp = F.log_softmax(model(xb).float(), dim=-1)[scored]  # (S, V)
                    if mode == "true":
                        with torch.no_grad():
                            labels = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
                    else:
                        labels = yb[scored]  # (S,)
                    loglik = logp.gather(1, labels[:, None]).sum()
                    grads = torch.autograd.grad(loglik, list(params.values()), allow_unused=True)
                    for n, g in zip(params, grads):
                        if g is not None:
                            total[n] += g.detach().float() ** 2 / draws
                count += 1
            if max_examples is not None and count >= max_examples:
                break
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no scored positions in the batches given to fisher_diagonal")
    return {n: t / count for n, t in total.items()}


def penalty(self, model: nn.Module) -> torch.Tensor:
    """lam / 2 * sum over terms and trainable names of F * (p - anchor)^2."""
    params = dict(model.named_parameters())
    total = torch.zeros((), device=next(iter(params.values())).device)
    for fisher, anchor in self.terms:
        for n, f in fisher.items():
            p = params.get(n)
            if p is not None and p.requires_grad:
                total = total + (f * (p.float() - anchor[n]) ** 2).sum()
    return 0.5 * self.lam * total
