"""Worked solution: I-JEPA's multi-block mask for one image."""

from __future__ import annotations

import random


def _rect(top: int, left: int, h: int, w: int, grid: int) -> set[int]:
    return {r * grid + c for r in range(top, top + h) for c in range(left, left + w)}


def multiblock_mask(grid: int, target_hw: tuple[int, int], context_hw: tuple[int, int],
                    cfg, rng: random.Random) -> tuple[list[int], list[list[int]]]:
    (th, tw), (ch, cw) = target_hw, context_hw
    tries = 0
    while tries < cfg.max_tries:
        tries += 1
        blocks = []
        for _ in range(cfg.num_targets):
            top = rng.randint(0, grid - th)
            left = rng.randint(0, grid - tw)
            blocks.append(_rect(top, left, th, tw, grid))
        hidden = set()
        for b in blocks:
            hidden |= b
        top = rng.randint(0, grid - ch)
        left = rng.randint(0, grid - cw)
        ctx = _rect(top, left, ch, cw, grid) - hidden
        if len(ctx) >= cfg.min_keep:
            return sorted(ctx), [sorted(b) for b in blocks]
    raise ValueError(f"no context of at least {cfg.min_keep} patches in {cfg.max_tries} tries")
