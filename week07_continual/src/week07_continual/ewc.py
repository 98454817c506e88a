"""Elastic weight consolidation: the diagonal Fisher and the quadratic penalty it weighs.

After a task, EWC (Kirkpatrick et al. 2017) pins each parameter to its value
``theta*`` with a spring whose stiffness is that parameter's Fisher information:

    penalty(theta) = lambda / 2 * sum_k F_k * (theta_k - theta*_k)^2

The Fisher of a model p_theta(y | x) at theta is
``F = E_x E_{y ~ p_theta(.|x)} [grad log p_theta(y|x)  grad log p_theta(y|x)^T]``;
EWC keeps its diagonal, one number per parameter. ``fisher_diagonal``
estimates it per example (the square of a per-example gradient; the square
of a batch-mean gradient would be a different, biased quantity):

- ``mode="true"``: labels are *sampled from the model* at every scored
  position (``samples`` draws per example). This is the Fisher of the model's
  own predictive distribution, the quantity the Laplace argument behind EWC
  needs;
- ``mode="empirical"``: the dataset's labels stand in for the samples. Cheaper
  to reason about and common in practice, but it is not the Fisher (Kunstner
  et al. 2019): at a good fit it shrinks towards the squared residuals.

For a language model an "example" is one sequence and its log-likelihood is
the sum over its scored positions, ``sum_t log p(y_t | x_<=t)``. With the
inputs fixed (teacher forcing) the positions are independent given x, so the
cross terms vanish in expectation and the sequence Fisher is the sum of the
per-position Fishers.

Online EWC (Schwarz et al. 2018, Progress & Compress) keeps one running
Fisher and one anchor instead of one pair per task:

    F~_k = gamma * F~_{k-1} + F_k,   theta*_k = theta after task k

``EWC(online=False)`` keeps the per-task pairs and sums their penalties.

Left out: K-FAC and other non-diagonal Fishers, synaptic intelligence / MAS
(path-integral importances), and Fisher estimation under mixed precision.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

FISHER_MODES = ("true", "empirical")

# ---------------------------------------------------------------- the Fisher diagonal


def trainable_named_params(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def fisher_diagonal(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    mode: str = "true", samples: int = 1, max_examples: int | None = None,
                    generator: torch.Generator | None = None,
                    progress: bool = False) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of ``model`` over the examples in ``batches``; one tensor per trainable param.

    ``batches`` yields ``(x, y)`` of shape (B, T): input ids and target ids,
    ``y < 0`` where a position is not scored. ``model(x)`` returns logits
    (B, T, V). Returns ``{name: F}`` with ``F`` shaped like the parameter:
    the mean over examples (and over the ``samples`` label draws of the true
    Fisher) of the squared per-example gradient of the log-likelihood.
    """
    if mode not in FISHER_MODES:
        raise ValueError(f"fisher mode must be one of {FISHER_MODES}, got {mode!r}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    params = trainable_named_params(model)
    if not params:
        raise ValueError("the model has no trainable parameters: nothing to estimate a Fisher for")
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    was_training = model.training
    model.eval()  # dropout off: the Fisher of the deterministic predictor
    count = 0
    bar = tqdm(desc=f"fisher ({mode})", disable=not progress, unit="ex")
    try:
        for x, y in batches:
            for b in range(x.size(0)):
                if max_examples is not None and count >= max_examples:
                    break
                xb, yb = x[b:b + 1], y[b:b + 1]  # (1, T)
                scored = yb >= 0
                if not bool(scored.any()):
                    continue
                draws = samples if mode == "true" else 1
                for _ in range(draws):
                    logp = F.log_softmax(model(xb).float(), dim=-1)  # (1, T, V)
                    if mode == "true":
                        with torch.no_grad():
                            labels = torch.multinomial(logp[scored].exp(), 1,
                                                       generator=generator).squeeze(1)
                    else:
                        labels = yb[scored]
                    loglik = logp[scored].gather(1, labels[:, None]).sum()  # sum over positions
                    grads = torch.autograd.grad(loglik, list(params.values()), allow_unused=True)
                    for (n, _), g in zip(params.items(), grads):
                        if g is not None:
                            fisher[n] += g.detach().float() ** 2 / draws
                count += 1
                bar.update(1)
            if max_examples is not None and count >= max_examples:
                break
    finally:
        bar.close()
        model.train(was_training)
    if count == 0:
        raise ValueError("no scored positions in the batches given to fisher_diagonal")
    return {n: f / count for n, f in fisher.items()}


# ---------------------------------------------------------------- the penalty


class EWC:
    """The EWC regulariser: ``consolidate`` after each task, add ``penalty(model)`` to the loss.

    ``lam``: the penalty strength lambda; ``online``: one decayed running
    Fisher (``gamma``) instead of one per task; ``fisher_mode``, ``samples``,
    ``max_examples``: passed to ``fisher_diagonal``.
    """

    def __init__(self, lam: float = 100.0, online: bool = False, gamma: float = 1.0,
                 fisher_mode: str = "true", samples: int = 1, max_examples: int | None = 64):
        if lam < 0:
            raise ValueError(f"EWC lambda must be >= 0, got {lam}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"online EWC gamma must be in [0, 1], got {gamma}")
        if fisher_mode not in FISHER_MODES:
            raise ValueError(f"fisher_mode must be one of {FISHER_MODES}, got {fisher_mode!r}")
        self.lam, self.online, self.gamma = lam, online, gamma
        self.fisher_mode, self.samples, self.max_examples = fisher_mode, samples, max_examples
        # one (fisher, anchor) pair per task; online EWC keeps exactly one
        self.terms: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    def consolidate(self, model: nn.Module, batches, generator: torch.Generator | None = None,
                    fisher: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Estimate the Fisher at the current parameters (unless given) and anchor them there."""
        if fisher is None:
            fisher = fisher_diagonal(model, batches, mode=self.fisher_mode, samples=self.samples,
                                     max_examples=self.max_examples, generator=generator)
        params = trainable_named_params(model)
        anchor = {n: params[n].detach().clone() for n in fisher}
        if self.online and self.terms:
            old = self.terms[0][0]
            fisher = {n: self.gamma * old[n] + f if n in old else f for n, f in fisher.items()}
            self.terms = [(fisher, anchor)]
        elif self.online:
            self.terms = [(fisher, anchor)]
        else:
            self.terms.append((fisher, anchor))
        return fisher

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """``lam / 2 * sum_terms sum_k F_k (theta_k - theta*_k)^2`` (a scalar, differentiable)."""
        params = dict(model.named_parameters())
        dev = next(iter(params.values())).device
        total = torch.zeros((), device=dev)
        for fisher, anchor in self.terms:
            for n, f in fisher.items():
                p = params.get(n)
                if p is None or not p.requires_grad:
                    continue
                total = total + (f * (p.float() - anchor[n]) ** 2).sum()
        return 0.5 * self.lam * total

    def nbytes(self) -> int:
        """Bytes of state EWC keeps (Fishers and anchors)."""
        return sum(t.numel() * t.element_size() for fisher, anchor in self.terms
                   for d in (fisher, anchor) for t in d.values())
