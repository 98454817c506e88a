"""I-JEPA's multi-block masking: M target blocks and one context block that excludes them.

Per batch (Assran et al. 2023, section 3 and appendix C; ``MaskConfig`` holds the
paper's numbers):

1. one target block shape (h, w) for the whole batch: a scale s ~ U(0.15, 0.2) of
   the grid's patches and an aspect ratio r ~ U(0.75, 1.5); ``k = int(N * s)``,
   ``h = round(sqrt(k r))``, ``w = round(sqrt(k / r))`` (``block_shape``);
2. one context block shape: s ~ U(0.85, 1.0), r = 1;
3. per image (``multiblock_mask``): M = 4 target blocks at uniform positions; one
   context block at a uniform position, minus every target patch (so the
   predictor cannot copy a target from the context), redrawn until at least
   ``min_keep`` context patches remain;
4. every image's lists cut to the shortest in the batch, so they stack into
   tensors (``MaskCollator``): context (B, Kc), targets (B, M, Kt).

Indices are row-major patch numbers (row * grid + col), sorted.

One change from the paper's code: a block may span the whole grid (the
reference code shrinks a block of the grid's full height to height - 1, which
on a 4 x 4 grid of 8x8 digits would cap the context at 9 of 16 patches).
Left out: the random-resized-crop augmentation (the paper uses crops only).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from track_jepa import masks as _self  # the package calls its own functions through the module

__all__ = ["MaskConfig", "block_shape", "block_indices", "multiblock_mask", "MaskCollator",
           "random_mask"]


# --------------------------------------------------------------------------- config


@dataclass
class MaskConfig:
    """The paper's multi-block masking settings (I-JEPA, ImageNet ViT runs)."""

    num_targets: int = 4                          # M target blocks per image
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)
    context_scale: tuple[float, float] = (0.85, 1.0)
    context_aspect: tuple[float, float] = (1.0, 1.0)
    min_keep: int = 2                             # fewest context patches (the paper: 10 of 196)
    max_tries: int = 200

    def __post_init__(self):
        for name in ("target_scale", "target_aspect", "context_scale", "context_aspect"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"MaskConfig.{name} must be 0 < lo <= hi, got {(lo, hi)}")
        if self.num_targets < 1 or self.min_keep < 1:
            raise ValueError("num_targets and min_keep must be >= 1")


# --------------------------------------------------------------------------- blocks


def block_shape(grid: int, scale: tuple[float, float], aspect: tuple[float, float],
                rng: random.Random) -> tuple[int, int]:
    """(h, w) of a block covering about ``scale`` of a grid x grid patch grid."""
    s = rng.uniform(*scale)
    r = rng.uniform(*aspect)
    keep = max(1, int(grid * grid * s))
    h = int(round(math.sqrt(keep * r)))
    w = int(round(math.sqrt(keep / r)))
    return min(max(h, 1), grid), min(max(w, 1), grid)


def block_indices(top: int, left: int, h: int, w: int, grid: int) -> set[int]:
    """Row-major indices of the patches of the h x w block at (top, left)."""
    return {(top + i) * grid + left + j for i in range(h) for j in range(w)}


def multiblock_mask(grid: int, target_hw: tuple[int, int], context_hw: tuple[int, int],
                    cfg: MaskConfig, rng: random.Random) -> tuple[list[int], list[list[int]]]:
    """One image's (context indices, [target indices] * M), each list sorted.

    Targets: ``cfg.num_targets`` blocks of ``target_hw`` at uniform positions (they may
    overlap each other). Context: a ``context_hw`` block at a uniform position minus the
    union of the targets; if fewer than ``cfg.min_keep`` patches remain, everything is
    drawn again (up to ``cfg.max_tries`` times, then ValueError).
    """
    th, tw = target_hw
    ch, cw = context_hw
    for _ in range(cfg.max_tries):
        targets = []
        for _ in range(cfg.num_targets):
            top, left = rng.randint(0, grid - th), rng.randint(0, grid - tw)
            targets.append(block_indices(top, left, th, tw, grid))
        covered = set().union(*targets)
        top, left = rng.randint(0, grid - ch), rng.randint(0, grid - cw)
        context = block_indices(top, left, ch, cw, grid) - covered
        if len(context) >= cfg.min_keep:
            return sorted(context), [sorted(t) for t in targets]
    raise ValueError(f"no context of >= {cfg.min_keep} patches left after {cfg.max_tries} "
                     f"draws on a {grid}x{grid} grid with {cfg.num_targets} targets of "
                     f"{target_hw}; lower num_targets or min_keep")


def random_mask(num_patches: int, ratio: float, batch: int, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's random masking: (visible (B, Kv), masked (B, Km)) sorted indices, ``ratio``
    of the patches masked in every row."""
    n_mask = min(num_patches - 1, max(1, int(round(num_patches * ratio))))
    order = torch.rand(batch, num_patches, generator=generator).argsort(dim=1)  # (B, N)
    masked, visible = order[:, :n_mask], order[:, n_mask:]
    return visible.sort(dim=1).values, masked.sort(dim=1).values


# --------------------------------------------------------------------------- collation


class MaskCollator:
    """``collate(examples) -> (images (B, C, H, W), context (B, Kc), targets (B, M, Kt))``.

    ``examples`` are (image, label) pairs (labels are dropped: I-JEPA never sees them).
    Usable as ``shared.SampledBatches(..., collate=MaskCollator(grid, cfg))``.
    """

    def __init__(self, grid: int, cfg: MaskConfig | None = None, seed: int = 0):
        self.grid, self.cfg = grid, cfg or MaskConfig()
        self.rng = random.Random(seed)

    def masks(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (B, Kc) and targets (B, M, Kt) for ``batch`` images."""
        cfg, g = self.cfg, self.grid
        t_hw = _self.block_shape(g, cfg.target_scale, cfg.target_aspect, self.rng)
        c_hw = _self.block_shape(g, cfg.context_scale, cfg.context_aspect, self.rng)
        drawn = [_self.multiblock_mask(g, t_hw, c_hw, cfg, self.rng) for _ in range(batch)]
        kc = min(len(c) for c, _ in drawn)
        kt = min(len(t) for _, ts in drawn for t in ts)
        context = torch.tensor([c[:kc] for c, _ in drawn], dtype=torch.long)          # (B, Kc)
        targets = torch.tensor([[t[:kt] for t in ts] for _, ts in drawn], dtype=torch.long)
        return context, targets                                                     # (B, M, Kt)

    def __call__(self, examples):
        images = torch.stack([torch.as_tensor(x) for x, _ in examples])  # (B, C, H, W)
        context, targets = self.masks(len(examples))
        return images, context, targets

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        s = state["rng"]
        self.rng.setstate((s[0], tuple(s[1]), s[2]))
