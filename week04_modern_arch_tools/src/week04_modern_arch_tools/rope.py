"""Rotary position embeddings (RoPE): each head's q and k rotated by their position.

``q_m . k_n`` then depends only on ``m - n``. ``rope_inv_freq`` gives each
channel pair's speed (base ``rope_base``, optional "linear" or Llama-3
scaling); ``Rotary`` holds the cos/sin tables; ``apply_rope`` rotates in
Hugging Face's "rotate half" layout, so weights move to and from
``transformers.LlamaForCausalLM`` without a permutation; ``apply_rope_swapped``
is the same rotation in fewer kernels for the one-token step.

Left out: YaRN / NTK-aware scaling and partial rotary dimensions.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from week04_modern_arch_tools.config import LlamaConfig


def rope_inv_freq(head_dim: int, base: float = 10000.0, scaling: dict | None = None) -> torch.Tensor:
    """The rotation speed of each channel pair: ``base^(-2i/d)``, (head_dim/2,), optionally scaled.

    "linear" divides every frequency by ``factor`` (position interpolation);
    "llama3" divides only the low frequencies (long wavelengths) and blends
    smoothly between ``low_freq_factor`` and ``high_freq_factor``.
    """
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv / factor
    # llama3: wavelengths longer than the original context / low_freq_factor are slowed down
    lo, hi = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    old = float(scaling.get("original_max_position_embeddings", 8192))
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / hi) & (wavelen <= old / lo)
    return torch.where(medium, blended, scaled)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + d/2) of ``x`` (B, H, T, hd) by the angles in cos/sin."""
    return x * cos + rotate_half(x) * sin


def apply_rope_swapped(x: torch.Tensor, cos: torch.Tensor, sin_rot: torch.Tensor) -> torch.Tensor:
    """``apply_rope`` in four kernels instead of six, bit for bit the same result.

    ``rotate_half(x) * sin`` is ``(-x2 * sin1, x1 * sin2)``; swapping the two
    halves (one ``flip`` of a (..., 2, hd/2) view) and multiplying by
    ``sin_rot = (-sin1, sin2)`` gives the same products, since negation is exact.
    """
    hd = x.size(-1)
    swapped = x.unflatten(-1, (2, hd // 2)).flip(-2).flatten(-2)  # (x2, x1)
    return x * cos + swapped * sin_rot


class Rotary(nn.Module):
    """cos/sin tables for positions 0..block_size-1, (block_size, head_dim) each."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        inv = rope_inv_freq(config.head_dim, config.rope_base, config.rope_scaling)
        pos = torch.arange(config.block_size, dtype=torch.float32)
        angles = torch.outer(pos, inv)  # (T, hd/2): angle of pair i at position t
        angles = torch.cat((angles, angles), dim=-1)  # (T, hd): pair i lives at i and i + hd/2
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        # sin with rotate_half's sign folded in: rotate_half(x) * sin == swap_halves(x) * sin_rot
        sign = torch.ones(config.head_dim)
        sign[: config.head_dim // 2] = -1.0
        self.register_buffer("sin_rot", angles.sin() * sign, persistent=False)

    def forward(self, pos) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for positions ``pos`` (T,) -> (1, 1, T, hd), or (B, T) -> (B, 1, T, hd);
        a ``range`` is sliced instead of gathered."""
        if isinstance(pos, range):
            return (self.cos[pos.start:pos.stop][None, None],
                    self.sin[pos.start:pos.stop][None, None])
        cos, sin = self.cos[pos], self.sin[pos]
        if pos.dim() == 1:
            return cos[None, None], sin[None, None]
        return cos[:, None], sin[:, None]
