"""The attention-kernel registry: a name -> a function that computes attention.

Every kernel has one signature::

    kernel(q, k, v, mask=None, causal=True, scale=None, dropout_p=0.0) -> y

- ``q`` (B, H, Tq, hd), ``k`` and ``v`` (B, H, Tk, hd): the same number of
  heads (grouped-query models repeat their kv heads before the call);
- ``mask``: None, or a boolean tensor broadcastable to (B, H, Tq, Tk) that is
  True where a query may read a key (it then holds causality too, and
  ``causal`` is ignored);
- ``causal``: with no mask, query t reads keys 0..t (Tq == Tk);
- ``scale``: the score multiplier, ``1 / sqrt(hd)`` when None;
- ``dropout_p``: dropout on the attention weights (0 at inference);
- ``y`` (B, H, Tq, hd).

How the model's switches reach a kernel (``GPTConfig``): ``causal=False``
arrives as ``causal=False`` with no mask (or a padding-only mask), and
``attn_scale=False`` as ``scale=1.0``. The model passes ``scale`` only when it
is not the default, so a kernel written against the older call
``kernel(q, k, v, mask=..., causal=..., dropout_p=...)`` still runs every
default model.

week01 registers ``"explicit"`` (matmuls, mask, softmax: every step visible)
and ``"sdpa"`` (PyTorch's fused ``scaled_dot_product_attention``). A later week
adds its kernel with ``register_attention("flash2", fn)`` and selects it with
``GPTConfig(attention="flash2")``, without editing this file; the configs
validate against whatever is registered when they are built.

Left out: paged caches. (week08's FlashAttention-2 kernels also take grouped kv heads,
``k``/``v`` with fewer heads than ``q``, without repeating them; these two need equal heads.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F

AttentionKernel = Callable[..., torch.Tensor]
ATTENTION_KERNELS: dict[str, AttentionKernel] = {}


def register_attention(name: str, fn: AttentionKernel | None = None, *, replace: bool = False):
    """Register ``fn`` under ``name`` (usable as a decorator: ``@register_attention("x")``).

    Registering a taken name raises unless ``replace=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an attention kernel's name must be a non-empty string, got {name!r}")

    def add(f: AttentionKernel) -> AttentionKernel:
        if not callable(f):
            raise TypeError(f"attention kernel {name!r} must be callable, got {type(f).__name__}")
        if name in ATTENTION_KERNELS and ATTENTION_KERNELS[name] is not f and not replace:
            raise ValueError(f"attention kernel {name!r} is already registered; pass "
                             "replace=True to swap it")
        ATTENTION_KERNELS[name] = f
        return f

    return add if fn is None else add(fn)


def attention_kernel(name: str) -> AttentionKernel:
    """The kernel registered as ``name``; a ValueError listing the valid names otherwise."""
    try:
        return ATTENTION_KERNELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown attention kernel {name!r}; registered: "
                         f"{', '.join(sorted(ATTENTION_KERNELS))} (a week adds its own with "
                         "week01_transformer.register_attention)") from None


# ---------------------------------------------------------------- the two built-in kernels


@lru_cache(maxsize=16)
def causal_mask(Tq: int, Tk: int, device=None) -> torch.Tensor:
    """(Tq, Tk) boolean: the last Tq of Tk positions, each reading itself and what came before
    (kept for the last few shapes: a forward pass asks once per layer)."""
    return torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(Tk - Tq)


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None,
                      causal: bool = True, scale: float | None = None) -> torch.Tensor:
    """Softmax attention weights (B, H, Tq, Tk); each row sums to 1 over the keys it may read."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    # scaling by 1/sqrt(hd) keeps the scores' variance ~1 so softmax does not saturate
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, Tq, Tk)
    if mask is None and causal:
        mask = causal_mask(q.size(-2), k.size(-2), q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # no peeking ahead (or at padding)
    return F.softmax(scores, dim=-1)


@register_attention("explicit")
def explicit_attention(q, k, v, mask=None, causal=True, scale=None, dropout_p=0.0):
    """``softmax(q k^T * scale + mask) @ v``, written out."""
    att = attention_weights(q, k, mask, causal, scale)  # (B, H, Tq, Tk)
    if dropout_p > 0:
        att = F.dropout(att, dropout_p)
    return att @ v  # (B, H, Tq, hd)


@register_attention("sdpa")
def sdpa_attention(q, k, v, mask=None, causal=True, scale=None, dropout_p=0.0):
    """PyTorch's fused kernel (flash / memory-efficient attention where the device has them)."""
    if causal and mask is None and q.size(-2) != k.size(-2):  # SDPA aligns is_causal top-left
        mask = causal_mask(q.size(-2), k.size(-2), q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                          is_causal=causal and mask is None, scale=scale)
