"""Week 08 exercise, absorbed attention: attend over MLA's latent instead of per-head keys.

Multi-head Latent Attention (``week08_sota/src/week08_sota/mla.py``, read its module
docstring) caches one latent ``c_kv`` (d_c numbers) and one rotary key (d_r numbers) per
token. The naive path decompresses them into per-head keys ``[W_UK_h c ; k_rope]`` and
values ``W_UV_h c`` before attending. But ``q_nope_h . (W_UK_h c) = (W_UK_h^T q_nope_h) .
c``: fold W_UK into the query and every head attends over the latent itself, with one
shared "key" ``[c ; k_rope]`` and one shared "value" ``c``; W_UV comes after the weighted
sum. No per-head key or value is ever built, which is what lets the cache hold only the
latent.

Fill in ``absorbed_attention`` below, then run ``make week08-exercises`` (``IMPL=solutions``
runs the worked one). It replaces ``MLAttention.absorbed_attention`` while its tests run:
the absorbed forward equals the naive one to 1e-5, with and without a query latent, with
YaRN, with and without left padding.
"""

from __future__ import annotations

import torch


def absorbed_attention(self, q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor,
                       k_rope: torch.Tensor, mask: torch.Tensor | None = None,
                       causal: bool = True) -> torch.Tensor:
    """Per-head attention outputs (B, H, T, d_v), computed in latent space.

    Inputs: ``q_nope`` (B, H, T, d_nope) and ``q_rope`` (B, H, T, d_r), the queries'
    no-position and rotated parts; ``c_kv`` (B, Tk, d_c), every latent so far (normed);
    ``k_rope`` (B, Tk, d_r), every rotated rotary key so far (one per token, shared by all
    heads). What the layer (``self``) gives you: ``self.absorbed_weights()`` returns
    W_UK (H, d_nope, d_c) and W_UV (H, d_v, d_c), the rows of ``self.kv_b.weight`` head by
    head; ``self.scale``, the softmax scale (use it as it is: it already holds
    1 / sqrt(d_nope + d_r) and YaRN's correction).

    1. q_lat = q_nope @ W_UK per head: (B, H, T, d_c) (``torch.einsum`` is your friend).
    2. scores = (q_lat . c_kv + q_rope . k_rope) * scale: (B, H, T, Tk); the latent and the
       rotary key are the same for every head, so broadcast them, do not copy them H times.
    3. Masking, the attention kernels' contract: ``mask`` is None or a boolean tensor that
       broadcasts to (B, H, T, Tk), True where a query may read a key; when it is None and
       ``causal`` is True, query t reads keys 0..t (here T == Tk); when it is None and
       ``causal`` is False, every key. Masked scores become -inf before the softmax.
    4. y_lat = softmax(scores) @ c_kv: (B, H, T, d_c); then y = y_lat @ W_UV^T per head:
       (B, H, T, d_v).

    (The package's own version runs the registered attention kernel on the concatenated
    query ``[q_lat ; q_rope]`` and key ``[c_kv ; k_rope]``: the same numbers.)
    """
    raise NotImplementedError("not implemented yet: MLAttention.absorbed_attention (fold W_UK "
                              "into the query, attend over the latent, apply W_UV after)")
