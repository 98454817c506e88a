"""A small Vision Transformer built from week01's blocks: patchify, fixed 2-D positions, encoder.

An image (B, C, H, W) is cut into non-overlapping ``patch x patch`` squares, each
flattened and projected to ``dim`` channels; a fixed 2-D sine-cosine position
(as in I-JEPA and MAE) is added; then ``depth`` pre-norm transformer blocks run
over the patches with *no causal mask*. The blocks are week01's ``Block`` with
``GPTConfig(causal=False)`` (every patch reads every other one), so the
attention goes through week01's kernel registry (``attention="sdpa"`` by
default, ``"explicit"`` or any registered kernel).

``ViTEncoder.forward(images, keep=None)``: with ``keep`` (B, K) patch indices
the encoder sees only those patches (I-JEPA's context encoder, MAE's
encoder); the positions travel with the patches. ``ViTEncoder.embed_tokens``
runs the blocks on tokens you built yourself (the predictor does).

Left out: a class token (features are mean-pooled over patches, as I-JEPA's
probes do), dropout/drop-path, convolutional stems and registers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from week01_transformer import Block, GPTConfig

__all__ = ["ViTConfig", "VIT_PRESETS", "ViTEncoder", "patchify", "unpatchify",
           "sincos_pos_embed", "block_config"]


# --------------------------------------------------------------------------- config


@dataclass
class ViTConfig:
    """Image and transformer sizes. ``ViTConfig.preset("tiny")``: 8x8 digits, patch 2."""

    img_size: int = 8        # square images, img_size x img_size pixels
    patch: int = 2           # patch side in pixels; img_size % patch == 0
    channels: int = 1
    dim: int = 64            # transformer width
    depth: int = 3
    heads: int = 4
    attention: str = "sdpa"  # a week01 kernel name

    def __post_init__(self):
        if self.img_size % self.patch:
            raise ValueError(f"img_size ({self.img_size}) must be a multiple of patch "
                             f"({self.patch})")
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.img_size // self.patch

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def patch_dim(self) -> int:
        """Pixels in one flattened patch."""
        return self.channels * self.patch * self.patch

    @classmethod
    def preset(cls, name: str, **overrides) -> ViTConfig:
        return replace(VIT_PRESETS[name], **overrides)


VIT_PRESETS = {
    "test": ViTConfig(img_size=8, patch=2, dim=32, depth=2, heads=2),     # unit tests
    "tiny": ViTConfig(img_size=8, patch=2, dim=64, depth=3, heads=4),     # digits, 16 patches
    "digits_p1": ViTConfig(img_size=8, patch=1, dim=64, depth=4, heads=4),  # 64 patches
    "animal": ViTConfig(img_size=28, patch=4, dim=96, depth=4, heads=4),  # 28x28, 49 patches
}


def block_config(dim: int, depth: int, heads: int, tokens: int, attention: str) -> GPTConfig:
    """The week01 ``GPTConfig`` behind a stack of bidirectional blocks (vocab unused)."""
    return GPTConfig(vocab_size=1, block_size=tokens, n_layer=depth, n_head=heads, n_embd=dim,
                     bias=True, attention=attention, causal=False)


# --------------------------------------------------------------------------- patches


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*patch*patch), patches in row-major order."""
    B, C, H, W = images.shape
    gh, gw = H // patch, W // patch
    x = images.reshape(B, C, gh, patch, gw, patch)
    x = x.permute(0, 2, 4, 1, 3, 5)                 # (B, gh, gw, C, p, p)
    return x.reshape(B, gh * gw, C * patch * patch)


def unpatchify(patches: torch.Tensor, patch: int, channels: int = 1) -> torch.Tensor:
    """(B, N, C*patch*patch) -> (B, C, H, W); the inverse of ``patchify`` (square grid)."""
    B, N, _ = patches.shape
    g = math.isqrt(N)
    x = patches.reshape(B, g, g, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, channels, g * patch, g * patch)


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positions (grid*grid, dim): half the channels encode the row,
    half the column, each as sin/cos at geometric frequencies (MAE's / I-JEPA's table)."""
    if dim % 4:
        raise ValueError(f"sincos positions need dim % 4 == 0, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (D/4,)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                                torch.arange(grid, dtype=torch.float64), indexing="ij")

    def enc(pos):  # (N,) -> (N, D/2)
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    return torch.cat([enc(rows), enc(cols)], dim=1).float()  # (N, D)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), idx (B, K) long -> (B, K, D): each row's chosen tokens."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.size(-1)))


# --------------------------------------------------------------------------- encoder


class ViTEncoder(nn.Module):
    """Patch embedding + fixed positions + week01 blocks (bidirectional) + LayerNorm."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.patch_embed = nn.Linear(config.patch_dim, config.dim)
        self.register_buffer("pos", sincos_pos_embed(config.dim, config.grid), persistent=False)
        gcfg = block_config(config.dim, config.depth, config.heads, config.num_patches,
                            config.attention)
        self.blocks = nn.ModuleList([Block(gcfg, i) for i in range(config.depth)])
        self.norm = nn.LayerNorm(config.dim)
        self.apply(_init)
        # a patch has only C*p*p pixels (768 in the paper's ViTs, 1-16 here): std 0.02 would
        # drown the image under the positions, so the patch projection keeps unit gain
        nn.init.normal_(self.patch_embed.weight, std=config.patch_dim ** -0.5)

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Run the blocks and the final norm on tokens (B, T, D) -> (B, T, D)."""
        for block in self.blocks:
            x = block(x)  # no Context: week01 builds a mask-free one, causal=False
        return self.norm(x)

    def forward(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, C, H, W), keep None or (B, K) patch indices -> (B, K or N, D)."""
        x = self.patch_embed(patchify(images, self.config.patch)) + self.pos  # (B, N, D)
        if keep is not None:
            x = gather_tokens(x, keep)                                        # (B, K, D)
        return self.embed_tokens(x)

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Mean-pooled patch features (B, D) for a linear probe, in eval mode, no gradient."""
        was = self.training
        self.eval()
        out = torch.cat([self(images[i:i + batch_size]).mean(1)
                         for i in range(0, len(images), batch_size)])
        self.train(was)
        return out


def _init(m: nn.Module) -> None:
    """Truncated-normal linears (std 0.02) and unit LayerNorms, as I-JEPA's ViT."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
