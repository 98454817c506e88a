"""Worked solutions: the MLP, the block and multi-head attention (week01 exercises)."""

from __future__ import annotations

import torch


def mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    """C -> 4C -> GELU -> C, position by position."""
    return self.dropout(self.proj(self.act(self.fc(x))))  # (..., C)


def block_forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
    """Pre-norm: each sub-layer reads a normalised copy and adds onto the residual stream."""
    x = x + self.attn(self.ln_1(x), ctx)  # (B, T, C)
    return x + self.mlp(self.ln_2(x))  # (B, T, C)


def attention_forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
    """Split qkv into heads, extend with the cache, attend, merge the heads, project."""
    B, T, _ = x.shape
    H, Hkv, hd = self.n_head, self.n_kv_head, self.head_dim
    q, k, v = self.qkv(x).split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
    q = q.view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
    k = k.view(B, T, Hkv, hd).transpose(1, 2)  # (B, Hkv, T, hd)
    v = v.view(B, T, Hkv, hd).transpose(1, 2)  # (B, Hkv, T, hd)
    if ctx is not None and ctx.cache is not None:
        k, v = ctx.cache.update(self.layer_idx, k, v)  # (B, Hkv, Tk, hd): every token so far
    y = self.attend(q, k, v, ctx)  # (B, H, T, hd)
    y = y.transpose(1, 2).reshape(B, T, H * hd)  # (B, T, H * hd): heads side by side
    return self.resid_dropout(self.proj(y))  # (B, T, C)
