"""Optimizers written on ``Value``: ``SGD`` and ``AdamW``, plus a cosine LR schedule.

Both follow PyTorch's update rules to the letter (``torch.optim.SGD`` with
momentum / weight decay, and ``torch.optim.AdamW`` with decoupled weight decay
and bias correction), so the tests can check them step for step against
``torch.optim`` in float64. An optimizer reads ``p.grad`` and updates
``p.data`` in place; set ``opt.lr`` between steps to follow a schedule.

``clip_grad_norm`` scales all gradients together when their global L2 norm is
above a threshold, as ``torch.nn.utils.clip_grad_norm_``.

Left out on purpose: parameter groups, AMSGrad, Nesterov momentum and state
dicts. They are one ``if`` each and would hide the core.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from week00_micrograd.engine import Value

__all__ = ["Optimizer", "SGD", "AdamW", "clip_grad_norm", "cosine_lr"]


# ---------------------------------------------------------------------------
# base class


def _check_nonneg(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


class Optimizer:
    """Holds the parameter list; ``zero_grad()`` resets their gradients."""

    def __init__(self, params: Iterable[Value], lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list; pass model.parameters()")
        for p in self.params:
            if not isinstance(p, Value):
                raise TypeError(f"optimizer parameters must be Values, got {type(p).__name__}")
        self.lr = _check_nonneg("lr", lr)
        self.steps = 0  # how many step() calls so far

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = 0.0

    def step(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


# ---------------------------------------------------------------------------
# SGD


class SGD(Optimizer):
    """``p -= lr * v`` with ``v = momentum * v + (g + weight_decay * p)``.

    That is ``torch.optim.SGD`` (dampening 0, no Nesterov): on the first step
    the velocity is the gradient itself. ``momentum=0`` is plain gradient descent.
    """

    def __init__(self, params: Iterable[Value], lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum = _check_nonneg("momentum", momentum)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)
        self.velocity = [0.0] * len(self.params)

    def step(self) -> None:
        lr, mu, wd = self.lr, self.momentum, self.weight_decay
        first = self.steps == 0
        for i, p in enumerate(self.params):
            g = p.grad
            if wd != 0.0:
                g = g + wd * p.data
            if mu != 0.0:
                g = g if first else mu * self.velocity[i] + g
                self.velocity[i] = g
            p.data -= lr * g
        self.steps += 1


# ---------------------------------------------------------------------------
# AdamW


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    Per parameter, at step t (1-based), with gradient g:

        p <- p * (1 - lr * weight_decay)            decay the weight, not the gradient
        m <- m + (1 - beta1) * (g - m)              first moment (torch's lerp form)
        v <- beta2 * v + (1 - beta2) * g * g        second moment
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params: Iterable[Value], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must each be in [0, 1), got {betas!r}")
        self.beta1, self.beta2 = float(b1), float(b2)
        self.eps = _check_nonneg("eps", eps)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)
        self.m = [0.0] * len(self.params)
        self.v = [0.0] * len(self.params)

    def step(self) -> None:
        self.steps += 1
        t = self.steps
        lr, b1, b2, eps = self.lr, self.beta1, self.beta2, self.eps
        decay = 1.0 - lr * self.weight_decay
        step_size = lr / (1.0 - b1**t)
        bc2_sqrt = (1.0 - b2**t) ** 0.5
        w = 1.0 - b1  # torch's lerp(m, g, w) switches formula at w = 0.5 for accuracy
        m, v = self.m, self.v
        for i, p in enumerate(self.params):
            g = p.grad
            p.data *= decay
            m[i] = m[i] + w * (g - m[i]) if w < 0.5 else g - (g - m[i]) * (1.0 - w)
            v[i] = v[i] * b2 + (1.0 - b2) * g * g
            p.data -= step_size * m[i] / (math.sqrt(v[i]) / bc2_sqrt + eps)


# ---------------------------------------------------------------------------
# learning-rate schedule


def cosine_lr(step: int, max_lr: float, total_steps: int, warmup_steps: int = 0,
              min_lr: float = 0.0) -> float:
    """Linear warmup to ``max_lr`` over ``warmup_steps``, then cosine decay to ``min_lr``.

    Without warmup, ``cosine_lr(t, lr, T)`` equals ``torch.optim.lr_scheduler.
    CosineAnnealingLR(T_max=T, eta_min=min_lr)`` at epoch ``t``; past ``total_steps``
    it stays at ``min_lr``.
    """
    if total_steps < 1 or warmup_steps < 0 or warmup_steps > total_steps:
        raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, "
                         f"got total_steps={total_steps}, warmup_steps={warmup_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------
# gradient clipping


def clip_grad_norm(params: Iterable[Value], max_norm: float) -> float:
    """Scale every ``p.grad`` by ``min(1, max_norm / (norm + 1e-6))``; return ``norm``.

    ``norm`` is the L2 norm of all the gradients together (one vector), taken before
    clipping, exactly as ``torch.nn.utils.clip_grad_norm_`` computes and applies it: the
    direction of the update is kept, only its length is capped.
    """
    max_norm = _check_nonneg("max_norm", max_norm)
    params = list(params)
    norm = math.sqrt(sum(p.grad * p.grad for p in params))
    scale = min(1.0, max_norm / (norm + 1e-6))
    for p in params:
        p.grad *= scale
    return norm
