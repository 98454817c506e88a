"""Worked solution: the online-softmax forward of one query block (week08 exercises)."""

from __future__ import annotations

import torch


def flash_block_forward(q_blk: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                        block_k: int, kv_stop: int, tile_mask_fn=None):
    """(o, lse) of one query block: running max m, running sum l, rescaled output acc."""
    *lead, bq, _ = q_blk.shape
    m = q_blk.new_full((*lead, bq), float("-inf"))  # (B, Hkv, rep, bq)
    l = q_blk.new_zeros((*lead, bq))
    acc = q_blk.new_zeros((*lead, bq, v.size(-1)))  # (B, Hkv, rep, bq, hd_v)
    for j0 in range(0, kv_stop, block_k):
        j1 = min(j0 + block_k, kv_stop)
        s = (q_blk @ k[..., j0:j1, :].transpose(-2, -1)) * scale  # (B, Hkv, rep, bq, bk)
        allowed = tile_mask_fn(j0, j1) if tile_mask_fn is not None else None
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        m_safe = torch.where(m_new == float("-inf"), torch.zeros_like(m_new), m_new)
        p = torch.exp(s - m_safe[..., None])
        alpha = torch.exp(m - m_safe)  # 0 for a row's first readable block (m = -inf)
        l = alpha * l + p.sum(dim=-1)
        acc = alpha[..., None] * acc + p @ v[..., j0:j1, :]
        m = m_new
    empty = l == 0
    o = acc / torch.where(empty, torch.ones_like(l), l)[..., None]
    lse = torch.where(empty, torch.full_like(m, float("-inf")), m + torch.log(l))
    return o, lse
