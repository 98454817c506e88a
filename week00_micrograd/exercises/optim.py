"""Week 00 exercises, the optimizer: one AdamW step, gradient clipping and the schedule.

Fill in the functions below, then run ``make week00-exercises``. ``adamw_step`` replaces
``week00_micrograd.AdamW.step`` and ``cosine_lr`` replaces ``week00_micrograd.cosine_lr``
while their tests run; the tests compare step for step with ``torch.optim.AdamW`` and
torch's schedulers, in float64.
"""


def adamw_step(self) -> None:
    """One AdamW step over ``self.params`` (Values; read ``p.grad``, change ``p.data``).

    State on ``self``: ``steps`` (add 1 first; t = the new value), ``lr``, ``beta1``,
    ``beta2``, ``eps``, ``weight_decay``, and the moment lists ``m`` and ``v`` (one float
    per parameter). For each parameter, with g = p.grad:

        p <- p * (1 - lr * weight_decay)          decoupled weight decay
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g * g
        p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """
    raise NotImplementedError("not implemented yet: AdamW.step (decay, two moments, "
                              "bias-corrected update; see its docstring)")


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    ``norm = sqrt(sum of p.grad**2 over every parameter)`` (one long vector), then multiply
    every ``p.grad`` by ``min(1, max_norm / (norm + 1e-6))`` and return ``norm`` (before
    clipping), exactly as ``torch.nn.utils.clip_grad_norm_``. A negative ``max_norm`` is a
    ValueError.
    """
    raise NotImplementedError("not implemented yet: clip_grad_norm (global L2 norm, one "
                              "common scale factor, return the norm before clipping)")


def cosine_lr(step: int, max_lr: float, total_steps: int, warmup_steps: int = 0,
              min_lr: float = 0.0) -> float:
    """Linear warmup to ``max_lr`` over ``warmup_steps``, then cosine decay to ``min_lr``.

    - step < warmup_steps: ``max_lr * (step + 1) / warmup_steps``;
    - step >= total_steps: ``min_lr``;
    - otherwise, with ``progress = (step - warmup_steps) / (total_steps - warmup_steps)``:
      ``min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2``.

    Bad arguments are a ValueError that says what is valid: ``total_steps >= 1``,
    ``0 <= warmup_steps <= total_steps``, ``step >= 0``.
    """
    raise NotImplementedError("not implemented yet: cosine_lr (warmup, then half a cosine "
                              "from max_lr to min_lr)")
