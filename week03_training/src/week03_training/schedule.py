"""Learning-rate schedules: linear warmup + cosine, and warmup-stable-decay (WSD).

A schedule is a pure function of the step: ``lr_multiplier(step)`` returns a
factor in [0, 1] that multiplies each parameter group's base learning rate
(so Muon's 0.02 and AdamW's 3e-3 follow the same shape). ``LRScheduler``
applies it to an optimizer and has a ``state_dict`` for checkpoints.

Conventions (``step`` counts optimizer steps from 0):

- warmup: ``(step + 1) / warmup_steps`` for ``step < warmup_steps``, so the
  first step is not wasted at lr 0 and step ``warmup_steps - 1`` is at full lr;
- cosine: from 1 at ``step = warmup_steps`` to ``min_ratio`` at ``step = total_steps``;
- WSD: 1 until ``total_steps - decay_steps``, then linear down to ``min_ratio``
  at ``step = total_steps`` (``decay_steps = round(decay_frac * total_steps)``).

Left out: cyclic, step-decay and inverse-sqrt schedules, and schedules keyed
on tokens instead of steps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

__all__ = ["ScheduleConfig", "lr_multiplier", "warmup_cosine", "wsd", "LRScheduler", "SCHEDULES"]

SCHEDULES = ("cosine", "wsd", "constant")

# ----------------------------------------------------------------------------- functions


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """Linear warmup, then half a cosine from 1 down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step >= total_steps:
        return min_ratio
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def wsd(step: int, warmup_steps: int, total_steps: int, decay_frac: float = 0.2,
        min_ratio: float = 0.0) -> float:
    """Warmup, a long flat stretch at 1, then a linear cool-down to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, round(decay_frac * total_steps))
    decay_start = max(warmup_steps, total_steps - decay_steps)
    if step < decay_start:
        return 1.0
    if step >= total_steps:
        return min_ratio
    progress = (step - decay_start) / max(1, total_steps - decay_start)
    return 1.0 + (min_ratio - 1.0) * progress


# ----------------------------------------------------------------------------- config


@dataclass
class ScheduleConfig:
    kind: str = "cosine"          # cosine | wsd | constant
    warmup_steps: int = 0
    total_steps: int = 1000
    min_ratio: float = 0.1        # final lr as a fraction of the base lr
    decay_frac: float = 0.2       # WSD only: fraction of the run spent cooling down

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.kind!r}; valid: {', '.join(SCHEDULES)}")
        if self.warmup_steps < 0 or self.total_steps < 1:
            raise ValueError(f"need warmup_steps >= 0 and total_steps >= 1, got "
                             f"{self.warmup_steps}, {self.total_steps}")
        if not 0.0 <= self.min_ratio <= 1.0 or not 0.0 < self.decay_frac <= 1.0:
            raise ValueError(f"need 0 <= min_ratio <= 1 and 0 < decay_frac <= 1, got "
                             f"{self.min_ratio}, {self.decay_frac}")


def lr_multiplier(step: int, cfg: ScheduleConfig) -> float:
    """The factor on the base learning rate at ``step`` under ``cfg``."""
    if cfg.kind == "cosine":
        return warmup_cosine(step, cfg.warmup_steps, cfg.total_steps, cfg.min_ratio)
    if cfg.kind == "wsd":
        return wsd(step, cfg.warmup_steps, cfg.total_steps, cfg.decay_frac, cfg.min_ratio)
    return (step + 1) / cfg.warmup_steps if step < cfg.warmup_steps else 1.0


# ----------------------------------------------------------------------------- scheduler


class LRScheduler:
    """Sets every group's ``lr`` to ``base_lr * lr_multiplier(step)``.

    Call ``apply()`` before ``optimizer.step()`` and ``advance()`` after it.
    Base learning rates are read from the groups once, at construction.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig):
        self.optimizer = optimizer
        self.cfg = cfg
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.step_count = 0

    def multiplier(self) -> float:
        return lr_multiplier(self.step_count, self.cfg)

    def apply(self) -> float:
        m = self.multiplier()
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * m
        return m

    def advance(self) -> None:
        self.step_count += 1

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "base_lrs": list(self.base_lrs),
                "cfg": asdict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
