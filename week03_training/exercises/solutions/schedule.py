"""Worked solutions: the warmup + cosine and the warmup-stable-decay schedules (week03)."""

import math


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """Linear warmup, then half a cosine from 1 down to ``min_ratio``; ``min_ratio`` after."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step >= total_steps:
        return min_ratio
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def wsd(step: int, warmup_steps: int, total_steps: int, decay_frac: float = 0.2,
        min_ratio: float = 0.0) -> float:
    """Warmup, flat at 1, then a straight line down to ``min_ratio`` over the last steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step >= total_steps:
        return min_ratio
    decay_start = max(warmup_steps, total_steps - max(1, round(decay_frac * total_steps)))
    if step < decay_start:
        return 1.0
    progress = (step - decay_start) / max(1, total_steps - decay_start)
    return 1.0 + (min_ratio - 1.0) * progress
