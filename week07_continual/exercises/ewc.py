"""Week 07 exercises, EWC: the diagonal Fisher (core ``fisher_diagonal``) and the EWC penalty
(core ``penalty``).

Fill in the two functions below, then run ``make week07-exercises``. ``fisher_diagonal``
replaces ``week07_continual.fisher_diagonal`` (and the name ``EWC.consolidate`` calls) and
``penalty`` replaces the method ``EWC.penalty`` while their tests run; the tests compare your
Fisher with per-example squared gradients and with a brute-force enumeration of every
labelling, and your penalty (value and gradient) with the formula, alone and inside
``train_task`` against a hand-written torch loop.

Elastic weight consolidation (Kirkpatrick et al. 2017) pins each parameter to its value
``theta*`` after a task with a spring whose stiffness is that parameter's Fisher
information ``F_k``; training on the next task then adds

    penalty(theta) = lam / 2 * sum_k F_k * (theta_k - theta*_k) ** 2

to the loss, so the parameters the old task relied on most move the least.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn


def fisher_diagonal(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    mode: str = "true", samples: int = 1, max_examples: int | None = None,
                    generator: torch.Generator | None = None,
                    progress: bool = False) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of ``model`` over the examples in ``batches``: ``{name: F}``.

    ``batches`` yields ``(x, y)``, both (B, T) int64: input ids and target ids, ``y < 0``
    where a position is not scored. ``model(x)`` returns logits (B, T, V). Return one float32
    tensor per trainable parameter (``p.requires_grad``), keyed by its name in
    ``model.named_parameters()`` and shaped like it.

    The Fisher is ``E_x E_{y ~ p_theta(.|x)} [g * g]`` with ``g = grad_theta log p_theta(y|x)``;
    EWC keeps its diagonal, so ``F`` is the mean over examples of ``g ** 2`` elementwise.
    An example is ONE sequence (a row of the batch), and its log-likelihood is the sum over
    its scored positions of ``log_softmax(logits)[t, y_t]``. Square each example's own
    gradient: the square of a batch-mean gradient is a different (and much smaller) number.

    For each row ``b`` (``x[b:b+1]``, ``y[b:b+1]``, shape (1, T)):

    1. ``scored = y_b >= 0``; a row with no scored position is skipped (not counted);
    2. ``logp = log_softmax(model(x_b).float(), -1)``, (1, T, V); ``logp[scored]`` is (S, V);
    3. the labels, (S,):
       - ``mode="true"``: sampled from the model itself,
         ``torch.multinomial(logp[scored].exp(), 1, generator=generator)`` (no grad), drawn
         ``samples`` times (a fresh forward and draw each time), averaging ``g ** 2`` over
         the draws. This is the Fisher of the model's own predictive distribution;
       - ``mode="empirical"``: the dataset's labels ``y_b[scored]``, once. Cheaper and
         common, but not the Fisher (Kunstner et al. 2019); a test checks the two differ;
    4. ``loglik = logp[scored].gather(1, labels[:, None]).sum()`` and
       ``torch.autograd.grad(loglik, params, allow_unused=True)`` (an unused parameter gets
       ``None``: it adds 0); add ``g.detach().float() ** 2`` into that parameter's sum.

    Stop after ``max_examples`` counted rows (``None``: all of them) and divide by the count.
    Put the model in ``eval()`` mode while you do this (dropout off) and give it back in the
    mode it came in, even on an error. ``progress`` may be ignored.

    Errors (``ValueError``): ``mode`` not ``"true"``/``"empirical"`` (message contains
    ``"fisher mode"``); ``samples < 1``; no trainable parameters; no scored position in any
    row (message contains ``"no scored"``).
    """
    raise NotImplementedError("not implemented yet: fisher_diagonal (per example, the square "
                              "of the gradient of its log-likelihood, averaged; see its "
                              "docstring)")


def penalty(self, model: nn.Module) -> torch.Tensor:
    """``lam / 2 * sum_terms sum_k F_k * (theta_k - theta*_k) ** 2``, a differentiable scalar.

    ``self`` is an ``EWC``. What it holds: ``self.lam`` (lambda, a float) and ``self.terms``,
    a list of ``(fisher, anchor)`` pairs, one per consolidated task (online EWC keeps one).
    Both are dicts ``{param name: tensor}`` shaped like the parameter; ``anchor`` holds
    ``theta*``, the values when that task was consolidated (detached, float32 Fishers).

    Look the current parameters up by name in ``dict(model.named_parameters())``. For each
    term and each name in its ``fisher``: skip a name the model no longer has or whose
    parameter does not train (``requires_grad`` False: a frozen base under LoRA gets no
    gradient and moves no more); otherwise add ``(F * (p.float() - anchor) ** 2).sum()``.
    Keep ``p`` itself in the graph (do not detach it) so that ``penalty.backward()`` gives
    each parameter ``lam * F * (theta - theta*)``, the spring's pull.

    No terms (nothing consolidated yet): return a zero scalar, on the device of the model's
    parameters, so ``loss + penalty`` still works.
    """
    raise NotImplementedError("not implemented yet: EWC.penalty (lam / 2 times the "
                              "Fisher-weighted squared distance to the anchors, summed over "
                              "the terms)")
