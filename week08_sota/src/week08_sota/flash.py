"""FlashAttention-2 (Dao, 2023, arXiv:2307.08691) in plain PyTorch: tiled, exact attention.

Attention ``softmax(q k^T * scale) v`` never needs the whole (Tq, Tk) score matrix at
once. Split the queries into blocks of ``block_q`` rows (the outer loop) and the keys and
values into blocks of ``block_k`` (the inner loop). For one query block keep three running
quantities per row: the largest score seen so far ``m``, the sum of ``exp(score - m)``
so far ``l``, and the un-normalised output ``acc = sum exp(score - m) v``. When a new key
block raises the maximum to ``m'`` the old sum and output are rescaled by
``exp(m - m')`` (the *online softmax*), so after the last block ``acc / l`` is exactly the
softmax-weighted sum. Only the row's logsumexp ``lse = m + log l`` is kept for backward.

The backward recomputes each probability block from the saved logsumexp,
``P = exp(q k^T * scale - lse)``, and uses ``D = rowsum(dO * O)`` (equal to
``rowsum(P * dP)``) for the softmax's gradient ``dS = P * (dP - D)``: the outer loop
is over key/value blocks (their ``dK``, ``dV`` accumulate locally), the inner over
query blocks (``dQ`` accumulates in place). Memory is O(T * block) beyond the inputs and
outputs, against O(Tq * Tk) for the textbook kernel.

- causal masking skips the key blocks a query block cannot read at all and masks only the
  blocks on the diagonal; with ``Tq != Tk`` the queries are the *last* Tq of Tk
  positions (bottom-right, as ``week01_transformer.causal_mask``: a decode step);
- any lengths (the last block is shorter), head dim of v may differ from q/k's (MLA);
- grouped-query attention: ``k``, ``v`` have Hkv heads, Hkv dividing H; a group's
  ``rep = H // Hkv`` query heads are viewed as an extra axis and read their kv head's
  blocks directly, so kv is never repeated in memory;
- ``mask``: a boolean broadcastable to (B, H, Tq, Tk), True where a query may read; it
  is sliced tile by tile (a broadcast mask is never expanded to full size). A row that
  may read nothing gives zeros (and zero gradients), where the textbook kernel gives NaN;
- computation in float32 for half inputs, in the input dtype otherwise (fp64 is exact to
  rounding).

Registered kernels (``week01_transformer.attention_kernel(name)``):

- ``"flash2_torch"``: this module;
- ``"flash2_triton"``: the same algorithm as a Triton kernel (``week08_sota.flash_triton``,
  imported only when called; it needs ``pip install triton``);
- ``"flash_attn"``: the fastest available, in this order of fallbacks:
  1. CUDA tensors and the ``flash-attn`` package installed (``pip install flash-attn``,
     the ``gpu`` extra), fp16/bf16 inputs, no ``mask``, equal head dims: its
     ``flash_attn_func`` (which aligns causal bottom-right too, and takes GQA directly);
  2. CUDA tensors (and ``triton`` importable): ``flash2_triton``;
  3. otherwise ``flash2_torch``.

Left out: dropout (``dropout_p > 0`` raises, in ``"flash_attn"`` too unless it dispatched
to flash-attn, which takes it; the registry's ``"explicit"`` or ``"sdpa"`` kernel does it), sliding windows and ALiBi as kernel options (a ``mask`` expresses them),
variable-length packed batches, and the fp8 and Hopper-specific tricks of FlashAttention-3.
"""

from __future__ import annotations

import math

import torch

from week01_transformer import register_attention

DEFAULT_BLOCK = 128


# ---------------------------------------------------------------- shapes and masks


def _check(q, k, v, mask, dropout_p):
    if dropout_p and dropout_p > 0:
        raise NotImplementedError(
            f"flash attention here has no dropout (got dropout_p={dropout_p}); use the "
            "'explicit' or 'sdpa' kernel for training with attention dropout")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v must be (B, H, T, hd); got shapes "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, H, _, hd = q.shape
    Bk, Hkv, Tk, hdk = k.shape
    if Bk != B or v.shape[:3] != k.shape[:3] or hdk != hd or v.size(0) != B:
        raise ValueError(f"k {tuple(k.shape)} / v {tuple(v.shape)} do not fit q {tuple(q.shape)}")
    if H % Hkv:
        raise ValueError(f"the {Hkv} kv heads must divide the {H} query heads")
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True where a query may read), got {mask.dtype}")


def _mask4(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A broadcastable mask with exactly 4 dims (a view)."""
    if mask is None:
        return None
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    return mask


def tile_mask(mask4, causal, offset, i0, i1, j0, j1, B, Hkv, rep, device):
    """The (B, Hkv, rep, i1 - i0, j1 - j0) boolean of one tile, or None if it reads all.

    ``mask4`` is the user's mask (4 dims, broadcastable); with no mask and ``causal``,
    query row i (of Tq) reads key j when ``j <= i + offset``, ``offset = Tk - Tq``.
    """
    if mask4 is not None:
        m = mask4[..., i0:i1, j0:j1]
        return m.expand(B, Hkv * rep, i1 - i0, j1 - j0).reshape(B, Hkv, rep, i1 - i0, j1 - j0)
    if causal and j1 - 1 > i0 + offset:  # some key in the tile is after some query
        rows = torch.arange(i0, i1, device=device)[:, None] + offset
        return torch.arange(j0, j1, device=device)[None, :] <= rows  # (bq, bk), broadcasts
    return None


def kv_end(causal: bool, has_mask: bool, i1: int, offset: int, Tk: int) -> int:
    """One past the last key a query block ending at row ``i1`` can read."""
    if causal and not has_mask:
        return max(0, min(Tk, i1 + offset))
    return Tk


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# ---------------------------------------------------------------- forward


def flash_block_forward(q_blk: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                        block_k: int, kv_stop: int, tile_mask_fn=None):
    """One query block over the key/value blocks, with the online softmax.

    ``q_blk`` (B, Hkv, rep, bq, hd): the block's queries, a group's query heads on axis 2;
    ``k`` (B, Hkv, 1, Tk, hd), ``v`` (B, Hkv, 1, Tk, hd_v): every key and value (axis 2
    broadcasts over the group). Only the key blocks starting before ``kv_stop`` are read.
    ``tile_mask_fn(j0, j1)`` gives the boolean (broadcastable to the scores' shape) that
    says which of the block's queries may read keys j0..j1-1, or None if all may.

    Returns ``o`` (B, Hkv, rep, bq, hd_v) and ``lse`` (B, Hkv, rep, bq): the softmax-weighted
    sum of the values and the log of each row's softmax denominator (``-inf`` and a zero
    output for a row that may read no key).
    """
    *lead, bq, _ = q_blk.shape
    m = q_blk.new_full((*lead, bq), float("-inf"))  # running max of the scores
    l = q_blk.new_zeros((*lead, bq))  # running sum of exp(score - m)
    acc = q_blk.new_zeros((*lead, bq, v.size(-1)))  # running sum of exp(score - m) v
    for j0 in range(0, kv_stop, block_k):
        j1 = min(j0 + block_k, kv_stop)
        s = (q_blk @ k[..., j0:j1, :].transpose(-2, -1)) * scale  # (B, Hkv, rep, bq, bk)
        allowed = tile_mask_fn(j0, j1) if tile_mask_fn is not None else None
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        m_new = torch.maximum(m, s.amax(dim=-1))
        m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)  # rows with nothing yet
        p = torch.exp(s - m_safe[..., None])  # (B, Hkv, rep, bq, bk)
        alpha = torch.exp(m - m_safe)  # rescales what was summed under the old max
        l = alpha * l + p.sum(dim=-1)
        acc = alpha[..., None] * acc + p @ v[..., j0:j1, :]
        m = m_new
    empty = l == 0
    o = acc / l.masked_fill(empty, 1.0)[..., None]
    lse = torch.where(empty, torch.full_like(m, float("-inf")), m + torch.log(l))
    return o, lse


def flash_forward(q, k, v, mask=None, causal=True, scale=None,
                  block_q: int = DEFAULT_BLOCK, block_k: int = DEFAULT_BLOCK):
    """The tiled forward: ``o`` (B, H, Tq, hd_v) and ``lse`` (B, H, Tq), float32 for half
    inputs. The outer loop runs over query blocks, each calling ``flash_block_forward``."""
    B, H, Tq, hd = q.shape
    Hkv, Tk = k.size(1), k.size(2)
    rep, offset = H // Hkv, Tk - Tq
    scale = 1.0 / math.sqrt(hd) if scale is None else scale
    dt = _acc_dtype(q.dtype)
    q5 = q.to(dt).view(B, Hkv, rep, Tq, hd)  # a group's query heads on axis 2 (a view)
    k5, v5 = k.to(dt)[:, :, None], v.to(dt)[:, :, None]  # (B, Hkv, 1, Tk, hd): no repeat
    mask4 = _mask4(mask)
    o = q.new_empty((B, Hkv, rep, Tq, v.size(-1)), dtype=dt)
    lse = q.new_empty((B, Hkv, rep, Tq), dtype=dt)
    for i0 in range(0, Tq, block_q):
        i1 = min(i0 + block_q, Tq)
        stop = kv_end(causal, mask is not None, i1, offset, Tk)

        def fn(j0, j1, i0=i0, i1=i1):
            return tile_mask(mask4, causal, offset, i0, i1, j0, j1, B, Hkv, rep, q.device)

        o[..., i0:i1, :], lse[..., i0:i1] = flash_block_forward(
            q5[..., i0:i1, :], k5, v5, scale, block_k, stop, fn)
    return o.view(B, H, Tq, -1), lse.view(B, H, Tq)


# ---------------------------------------------------------------- backward


def flash_backward(do, q, k, v, o, lse, mask=None, causal=True, scale=None,
                   block_q: int = DEFAULT_BLOCK, block_k: int = DEFAULT_BLOCK):
    """dq, dk, dv from the saved logsumexp: each probability block is recomputed.

    Outer loop over key/value blocks (dK_j, dV_j accumulate in a local), inner over the
    query blocks that can read them (dQ_i accumulates in place)."""
    B, H, Tq, hd = q.shape
    Hkv, Tk = k.size(1), k.size(2)
    rep, offset = H // Hkv, Tk - Tq
    scale = 1.0 / math.sqrt(hd) if scale is None else scale
    dt = _acc_dtype(q.dtype)
    q5 = q.to(dt).view(B, Hkv, rep, Tq, hd)
    do5 = do.to(dt).reshape(B, Hkv, rep, Tq, -1)
    k4, v4 = k.to(dt), v.to(dt)
    lse5 = lse.view(B, Hkv, rep, Tq)
    lse5 = lse5.masked_fill(lse5 == float("-inf"), float("inf"))  # empty rows: P = 0
    D = (do5 * o.to(dt).view(B, Hkv, rep, Tq, -1)).sum(dim=-1)  # (B, Hkv, rep, Tq)
    mask4 = _mask4(mask)
    dq = torch.zeros_like(q5)
    dk = torch.zeros_like(k4)
    dv = torch.zeros_like(v4)
    for j0 in range(0, Tk, block_k):
        j1 = min(j0 + block_k, Tk)
        k_j = k4[:, :, None, j0:j1]  # (B, Hkv, 1, bk, hd)
        v_j = v4[:, :, None, j0:j1]
        dk_j = torch.zeros_like(k4[:, :, j0:j1])  # (B, Hkv, bk, hd)
        dv_j = torch.zeros_like(v4[:, :, j0:j1])
        # causal: the first query that reads key j0 is row j0 - offset
        i_first = max(0, j0 - offset) if causal and mask is None else 0
        for i0 in range(i_first - i_first % block_q, Tq, block_q):
            i1 = min(i0 + block_q, Tq)
            if kv_end(causal, mask is not None, i1, offset, Tk) <= j0:
                continue
            q_i, do_i = q5[..., i0:i1, :], do5[..., i0:i1, :]
            s = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, Hkv, rep, bq, bk)
            allowed = tile_mask(mask4, causal, offset, i0, i1, j0, j1, B, Hkv, rep, q.device)
            if allowed is not None:
                s = s.masked_fill(~allowed, float("-inf"))
            p = torch.exp(s - lse5[..., i0:i1, None])  # the forward's probabilities
            dv_j += (p.transpose(-2, -1) @ do_i).sum(dim=2)  # a group's heads add up
            dp = do_i @ v_j.transpose(-2, -1)  # (B, Hkv, rep, bq, bk)
            ds = p * (dp - D[..., i0:i1, None])  # softmax backward, with D = rowsum(dO O)
            dq[..., i0:i1, :] += (ds @ k_j) * scale
            dk_j += (ds.transpose(-2, -1) @ q_i).sum(dim=2) * scale
        dk[:, :, j0:j1], dv[:, :, j0:j1] = dk_j, dv_j
    return (dq.view(B, H, Tq, hd).to(q.dtype), dk.to(k.dtype), dv.to(v.dtype))


# ---------------------------------------------------------------- autograd and the kernels


class FlashAttention2(torch.autograd.Function):
    """Tiled attention whose backward recomputes probabilities from the saved logsumexp
    (saved: q, k, v, o and lse; never a (Tq, Tk) matrix)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, causal, scale, block_q, block_k):
        o, lse = flash_forward(q, k, v, mask, causal, scale, block_q, block_k)
        o = o.to(q.dtype)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.mask, ctx.causal, ctx.scale, ctx.blocks = mask, causal, scale, (block_q, block_k)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_backward(do, q, k, v, o, lse, ctx.mask, ctx.causal, ctx.scale,
                                    *ctx.blocks)
        return dq, dk, dv, None, None, None, None, None


def flash2_torch(q, k, v, mask=None, causal=True, scale=None, dropout_p=0.0,
                 block_q: int = DEFAULT_BLOCK, block_k: int = DEFAULT_BLOCK):
    """FlashAttention-2 in PyTorch with the registry's signature: (B, H, Tq, hd_v).

    ``k``, ``v`` may have fewer heads (GQA), ``v`` another head dim; ``mask`` is boolean
    (True = may read) and then holds causality too (``causal`` is ignored)."""
    _check(q, k, v, mask, dropout_p)
    if mask is not None:
        causal = False
    return FlashAttention2.apply(q, k, v, mask, bool(causal), scale, int(block_q), int(block_k))


def _flash_attn_func():
    """flash-attn's ``flash_attn_func`` or None when the package is not installed."""
    try:
        from flash_attn import flash_attn_func
    except ImportError:
        return None
    return flash_attn_func


def flash_attn(q, k, v, mask=None, causal=True, scale=None, dropout_p=0.0):
    """The fastest flash kernel available (order in the module docstring)."""
    if q.is_cuda:
        fa = _flash_attn_func()
        if (fa is not None and mask is None and q.dtype in (torch.float16, torch.bfloat16)
                and q.size(-1) == v.size(-1)):
            # flash-attn takes (B, T, H, hd), GQA directly, and aligns causal bottom-right
            y = fa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                   dropout_p=dropout_p, softmax_scale=scale, causal=causal)
            return y.transpose(1, 2)
        try:
            import triton  # noqa: F401
        except ImportError:
            pass
        else:
            from week08_sota.flash_triton import flash2_triton
            return flash2_triton(q, k, v, mask, causal, scale, dropout_p)
    return flash2_torch(q, k, v, mask, causal, scale, dropout_p)


def _flash2_triton_lazy(q, k, v, mask=None, causal=True, scale=None, dropout_p=0.0):
    """``flash2_triton``, imported on first call (so importing week08_sota needs no triton)."""
    from week08_sota.flash_triton import flash2_triton
    return flash2_triton(q, k, v, mask, causal, scale, dropout_p)


register_attention("flash2_torch", flash2_torch, replace=True)
register_attention("flash2_triton", _flash2_triton_lazy, replace=True)
register_attention("flash_attn", flash_attn, replace=True)
