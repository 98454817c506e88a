"""Worked solutions: the GQA head repeat and the grouped one-token attention (week04)."""

from __future__ import annotations

import math

import torch


def repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
    """(B, Hkv, T, hd) -> (B, H, T, hd); output head h reads input head h // rep."""
    rep = self.n_head // self.n_kv_head
    if rep == 1:
        return x
    B, Hkv, T, hd = x.shape
    return x[:, :, None].expand(B, Hkv, rep, T, hd).reshape(B, Hkv * rep, T, hd)


def decode_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """q (B, H, 1, hd) over k, v (B, Hkv, Tk, hd): each group's queries as rows of its head."""
    B, H, _, hd = q.shape
    qg = q.view(B, self.n_kv_head, H // self.n_kv_head, hd)  # (B, Hkv, rep, hd)
    scores = qg @ k.transpose(-2, -1) / math.sqrt(hd)  # (B, Hkv, rep, Tk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # mask (B, 1, 1, Tk) broadcasts
    y = scores.softmax(dim=-1) @ v  # (B, Hkv, rep, hd)
    return y.reshape(B, H, 1, hd)
