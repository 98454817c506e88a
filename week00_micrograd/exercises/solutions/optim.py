"""Worked solutions: one AdamW step and the cosine schedule (week00 exercises)."""

import math


def adamw_step(self) -> None:
    """AdamW as torch.optim.AdamW: decoupled decay, bias-corrected moments."""
    self.steps += 1
    t = self.steps
    for i, p in enumerate(self.params):
        g = p.grad
        p.data *= 1.0 - self.lr * self.weight_decay
        self.m[i] = self.beta1 * self.m[i] + (1.0 - self.beta1) * g
        self.v[i] = self.beta2 * self.v[i] + (1.0 - self.beta2) * g * g
        denom = math.sqrt(self.v[i]) / math.sqrt(1.0 - self.beta2**t) + self.eps
        p.data -= self.lr / (1.0 - self.beta1**t) * self.m[i] / denom


def clip_grad_norm(params, max_norm: float) -> float:
    """One scale for all gradients: min(1, max_norm / (norm + 1e-6)); returns the norm."""
    if max_norm < 0:
        raise ValueError(f"max_norm must be >= 0, got {max_norm}")
    params = list(params)
    norm = math.sqrt(sum(p.grad * p.grad for p in params))
    scale = min(1.0, max_norm / (norm + 1e-6))
    for p in params:
        p.grad *= scale
    return norm


def cosine_lr(step: int, max_lr: float, total_steps: int, warmup_steps: int = 0,
              min_lr: float = 0.0) -> float:
    """Linear warmup, then cosine decay from max_lr to min_lr; min_lr after the end."""
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
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
