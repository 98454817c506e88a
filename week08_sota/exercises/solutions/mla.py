"""Worked solution: MLA's absorbed attention, written out with matmuls (week08)."""

from __future__ import annotations

import torch


def absorbed_attention(self, q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor,
                       k_rope: torch.Tensor, mask: torch.Tensor | None = None,
                       causal: bool = True) -> torch.Tensor:
    """(B, H, T, d_v): W_UK folded into the query, attention over the latent, W_UV after."""
    w_uk, w_uv = self.absorbed_weights()  # (H, d_nope, d_c), (H, d_v, d_c)
    q_lat = torch.einsum("bhtn,hnc->bhtc", q_nope, w_uk)  # (B, H, T, d_c)
    # c_kv[:, None] is (B, 1, Tk, d_c): one latent "head" that broadcasts over the H heads
    scores = (q_lat @ c_kv[:, None].transpose(-2, -1)
              + q_rope @ k_rope[:, None].transpose(-2, -1)) * self.scale  # (B, H, T, Tk)
    T, Tk = scores.shape[-2:]
    if mask is None and causal:
        mask = torch.ones(T, Tk, dtype=torch.bool, device=scores.device).tril(Tk - T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    y_lat = scores.softmax(dim=-1) @ c_kv[:, None]  # (B, H, T, d_c)
    return torch.einsum("bhtc,hvc->bhtv", y_lat, w_uv)  # (B, H, T, d_v)
