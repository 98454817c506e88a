"""FlashAttention-2 as Triton kernels: the algorithm of ``week08_sota.flash``, one program
per tile.

Four kernels, each a grid of independent programs:

- ``_fwd``: one program per (query block, batch * head). It loads its query block once and
  walks the key/value blocks with the online softmax (running max ``m``, sum ``l``,
  output ``acc``), stopping at the last block causality lets it read; it writes the
  output and the row's logsumexp;
- ``_bwd_preprocess``: ``D = rowsum(dO * O)`` per query row;
- ``_bwd_dkdv``: one program per (key block, batch * kv head). It keeps its ``dK``, ``dV``
  in registers and walks the query blocks that can read it, for each of the ``H // Hkv``
  query heads of its group (GQA without repeating kv), recomputing ``P`` from the
  logsumexp;
- ``_bwd_dq``: one program per (query block, batch * head), walking the key blocks as the
  forward does. Splitting dQ from dK/dV costs one more recomputation of ``QK^T`` but
  needs no atomics (the FlashAttention-2 paper's Triton variant does the same).

The same contract as ``flash2_torch``: q (B, H, Tq, hd), k and v (B, Hkv, Tk, hd[_v]),
causal aligned bottom-right, a boolean ``mask`` (read tile by tile through its broadcast
strides, never expanded in memory), rows that may read nothing give zeros. Head dims are
padded to a power of two (at least 16, the smallest ``tl.dot``), lengths are handled by
load masks. fp32 dots use ``input_precision="ieee"`` (not TF32), so the kernel matches
SDPA's math path to 1e-5 on a GPU too; fp16/bf16 use the tensor cores and accumulate in
fp32; fp64 accumulates in fp64.

On a CPU, Triton runs the kernels in its interpreter when ``TRITON_INTERPRET=1`` is set
before this module is imported (``week08_sota.flash`` imports it only on the first call
of ``"flash2_triton"``, so setting it before that call is enough);
the interpreter runs each program with NumPy, slowly: keep shapes tiny there.

Left out: dropout (raises), autotuning (block sizes are arguments), the causal
"diagonal block first" split and other scheduling tricks, and a varlen packed layout.
"""

from __future__ import annotations

import math

import torch

from week08_sota.flash import _check, _mask4

try:
    import triton
    import triton.language as tl
except ImportError:  # the kernels need it; the rest of week08_sota does not
    triton = tl = None

DEFAULT_BLOCK = 64


def _need_triton():
    if triton is None:
        raise ImportError("the flash2_triton kernel needs Triton: pip install triton "
                          "(on a CPU it runs in the interpreter, TRITON_INTERPRET=1); "
                          "the 'flash2_torch' kernel needs nothing")


# ---------------------------------------------------------------- the kernels
# (defined only where triton imports; TRITON_INTERPRET is read when they are decorated,
# that is when this module is first imported)

if triton is not None:
    @triton.jit
    def _scores(q, kT, IEEE: tl.constexpr):
        if IEEE:
            return tl.dot(q, kT, input_precision="ieee")
        return tl.dot(q, kT)

    @triton.jit
    def _allowed(offs_m, offs_n, b, h, M, smb, smh, smt, sms, Tq, Tk, offset,
                 CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr):
        ok = (offs_m[:, None] < Tq) & (offs_n[None, :] < Tk)
        if CAUSAL:
            ok = ok & (offs_n[None, :] <= offs_m[:, None] + offset)
        if HAS_MASK:
            mm = tl.load(M + b * smb + h * smh + offs_m[:, None] * smt + offs_n[None, :] * sms,
                         mask=ok, other=0)
            ok = ok & (mm != 0)
        return ok

    @triton.jit
    def _fwd(Q, K, V, O, LSE, M,
             sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sob, soh, sot,
             slb, slh, smb, smh, smt, sms,
             H, REP, Tq, Tk, HD, HDV, scale, offset,
             CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, IEEE: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
             BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
        pid_m = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        hk = h // REP  # this query head's kv head
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :],
                    mask=(offs_m[:, None] < Tq) & (offs_d[None, :] < HD), other=0.0)
        acc_t = tl.float64 if Q.dtype.element_ty == tl.float64 else tl.float32
        m_i = tl.full([BLOCK_M], float("-inf"), acc_t)  # running max
        l_i = tl.zeros([BLOCK_M], acc_t)  # running sum of exp(s - m)
        acc = tl.zeros([BLOCK_M, BLOCK_DV], acc_t)  # running sum of exp(s - m) v
        end = Tk
        if CAUSAL:  # key blocks past the block's last query are never read
            end = tl.minimum(Tk, (pid_m + 1) * BLOCK_M + offset)
        for start_n in range(0, end, BLOCK_N):
            kn = start_n + offs_n
            kT = tl.load(K + b * skb + hk * skh + kn[None, :] * skt + offs_d[:, None],
                         mask=(kn[None, :] < Tk) & (offs_d[:, None] < HD), other=0.0)
            s = _scores(q, kT, IEEE).to(acc_t) * scale  # (BLOCK_M, BLOCK_N)
            ok = _allowed(offs_m, kn, b, h, M, smb, smh, smt, sms, Tq, Tk, offset,
                          CAUSAL, HAS_MASK)
            s = tl.where(ok, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp(s - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + b * svb + hk * svh + kn[:, None] * svt + offs_dv[None, :],
                        mask=(kn[:, None] < Tk) & (offs_dv[None, :] < HDV), other=0.0)
            acc = acc * alpha[:, None] + _scores(p.to(v.dtype), v, IEEE).to(acc_t)
            m_i = m_new
        empty = l_i == 0.0
        l_safe = tl.where(empty, 1.0, l_i)
        o = acc / l_safe[:, None]
        lse = tl.where(empty, float("-inf"), m_i + tl.log(l_safe))
        tl.store(O + b * sob + h * soh + offs_m[:, None] * sot + offs_dv[None, :],
                 o.to(O.dtype.element_ty),
                 mask=(offs_m[:, None] < Tq) & (offs_dv[None, :] < HDV))
        tl.store(LSE + b * slb + h * slh + offs_m, lse, mask=offs_m < Tq)

    @triton.jit
    def _bwd_preprocess(O, DO, Dl, sob, soh, sot, sdb, sdh, sdt, slb, slh, H, Tq, HDV,
                        BLOCK_M: tl.constexpr, BLOCK_DV: tl.constexpr):
        pid_m = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_dv = tl.arange(0, BLOCK_DV)
        inb = (offs_m[:, None] < Tq) & (offs_dv[None, :] < HDV)
        o = tl.load(O + b * sob + h * soh + offs_m[:, None] * sot + offs_dv[None, :],
                    mask=inb, other=0.0)
        do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdt + offs_dv[None, :],
                     mask=inb, other=0.0)
        acc_t = tl.float64 if O.dtype.element_ty == tl.float64 else tl.float32
        d = tl.sum(o.to(acc_t) * do.to(acc_t), 1)  # D = rowsum(dO * O)
        tl.store(Dl + b * slb + h * slh + offs_m, d, mask=offs_m < Tq)

    @triton.jit
    def _bwd_dkdv(Q, K, V, DO, LSE, Dl, DK, DV, M,
                  sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sdb, sdh, sdt,
                  slb, slh, sdkb, sdkh, sdkt, sdvb, sdvh, sdvt, smb, smh, smt, sms,
                  HKV, REP, Tq, Tk, HD, HDV, scale, offset,
                  CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, IEEE: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
        pid_n = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // HKV
        hk = bh % HKV
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_m0 = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        k = tl.load(K + b * skb + hk * skh + offs_n[:, None] * skt + offs_d[None, :],
                    mask=(offs_n[:, None] < Tk) & (offs_d[None, :] < HD), other=0.0)
        v = tl.load(V + b * svb + hk * svh + offs_n[:, None] * svt + offs_dv[None, :],
                    mask=(offs_n[:, None] < Tk) & (offs_dv[None, :] < HDV), other=0.0)
        acc_t = tl.float64 if Q.dtype.element_ty == tl.float64 else tl.float32
        dk = tl.zeros([BLOCK_N, BLOCK_D], acc_t)
        dv = tl.zeros([BLOCK_N, BLOCK_DV], acc_t)
        start_m = 0
        if CAUSAL:  # the first query row that reads this block's first key
            start_m = tl.maximum(pid_n * BLOCK_N - offset, 0) // BLOCK_M * BLOCK_M
        for r in range(0, REP):  # the query heads of this kv head's group
            h = hk * REP + r
            for m0 in range(start_m, Tq, BLOCK_M):
                offs_m = m0 + offs_m0
                rows = offs_m < Tq
                q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :],
                            mask=rows[:, None] & (offs_d[None, :] < HD), other=0.0)
                do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdt + offs_dv[None, :],
                             mask=rows[:, None] & (offs_dv[None, :] < HDV), other=0.0)
                lse = tl.load(LSE + b * slb + h * slh + offs_m, mask=rows, other=0.0)
                lse = tl.where(lse == float("-inf"), float("inf"), lse)  # empty rows: P = 0
                dl = tl.load(Dl + b * slb + h * slh + offs_m, mask=rows, other=0.0)
                s = _scores(q, tl.trans(k), IEEE).to(acc_t) * scale  # (BLOCK_M, BLOCK_N)
                ok = _allowed(offs_m, offs_n, b, h, M, smb, smh, smt, sms, Tq, Tk, offset,
                              CAUSAL, HAS_MASK)
                p = tl.where(ok, tl.exp(s - lse[:, None]), 0.0)  # the forward's P
                dv += _scores(tl.trans(p).to(do.dtype), do, IEEE).to(acc_t)
                dp = _scores(do, tl.trans(v), IEEE).to(acc_t)
                ds = p * (dp - dl[:, None])  # softmax backward with D
                dk += _scores(tl.trans(ds).to(q.dtype), q, IEEE).to(acc_t)
        tl.store(DK + b * sdkb + hk * sdkh + offs_n[:, None] * sdkt + offs_d[None, :],
                 (dk * scale).to(DK.dtype.element_ty),
                 mask=(offs_n[:, None] < Tk) & (offs_d[None, :] < HD))
        tl.store(DV + b * sdvb + hk * sdvh + offs_n[:, None] * sdvt + offs_dv[None, :],
                 dv.to(DV.dtype.element_ty),
                 mask=(offs_n[:, None] < Tk) & (offs_dv[None, :] < HDV))

    @triton.jit
    def _bwd_dq(Q, K, V, DO, LSE, Dl, DQ, M,
                sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sdb, sdh, sdt,
                slb, slh, sdqb, sdqh, sdqt, smb, smh, smt, sms,
                H, REP, Tq, Tk, HD, HDV, scale, offset,
                CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, IEEE: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr):
        pid_m = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        hk = h // REP
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n0 = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        rows = offs_m < Tq
        q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :],
                    mask=rows[:, None] & (offs_d[None, :] < HD), other=0.0)
        do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdt + offs_dv[None, :],
                     mask=rows[:, None] & (offs_dv[None, :] < HDV), other=0.0)
        lse = tl.load(LSE + b * slb + h * slh + offs_m, mask=rows, other=0.0)
        lse = tl.where(lse == float("-inf"), float("inf"), lse)
        dl = tl.load(Dl + b * slb + h * slh + offs_m, mask=rows, other=0.0)
        acc_t = tl.float64 if Q.dtype.element_ty == tl.float64 else tl.float32
        dq = tl.zeros([BLOCK_M, BLOCK_D], acc_t)
        end = Tk
        if CAUSAL:
            end = tl.minimum(Tk, (pid_m + 1) * BLOCK_M + offset)
        for start_n in range(0, end, BLOCK_N):
            offs_n = start_n + offs_n0
            cols = offs_n < Tk
            k = tl.load(K + b * skb + hk * skh + offs_n[:, None] * skt + offs_d[None, :],
                        mask=cols[:, None] & (offs_d[None, :] < HD), other=0.0)
            vT = tl.load(V + b * svb + hk * svh + offs_n[None, :] * svt + offs_dv[:, None],
                         mask=cols[None, :] & (offs_dv[:, None] < HDV), other=0.0)
            s = _scores(q, tl.trans(k), IEEE).to(acc_t) * scale
            ok = _allowed(offs_m, offs_n, b, h, M, smb, smh, smt, sms, Tq, Tk, offset,
                          CAUSAL, HAS_MASK)
            p = tl.where(ok, tl.exp(s - lse[:, None]), 0.0)
            dp = _scores(do, vT, IEEE).to(acc_t)
            ds = p * (dp - dl[:, None])
            dq += _scores(ds.to(k.dtype), k, IEEE).to(acc_t)
        tl.store(DQ + b * sdqb + h * sdqh + offs_m[:, None] * sdqt + offs_d[None, :],
                 (dq * scale).to(DQ.dtype.element_ty),
                 mask=rows[:, None] & (offs_d[None, :] < HD))


# ---------------------------------------------------------------- launching


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _mask_arg(mask, q, Tk):
    """The int8 mask viewed as (B, H, Tq, Tk) and its strides (0 along broadcast axes, so a
    (B, 1, 1, Tk) padding mask stays that small), or a dummy."""
    if mask is None:
        return q.new_empty(1, dtype=torch.int8), (0, 0, 0, 0)
    m = _mask4(mask).to(torch.int8).expand(*q.shape[:3], Tk)
    return m, tuple(m.stride())


def _lastdim_contiguous(*ts):
    return [t if t.stride(-1) == 1 else t.contiguous() for t in ts]


class FlashAttention2Triton(torch.autograd.Function):
    """Forward and backward through the Triton kernels (saved: q, k, v, o and lse)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, causal, scale, block_m, block_n):
        _need_triton()
        fwd = _fwd
        q, k, v = _lastdim_contiguous(q, k, v)
        B, H, Tq, hd = q.shape
        Hkv, Tk, hdv = k.size(1), k.size(2), v.size(-1)
        acc = torch.float64 if q.dtype == torch.float64 else torch.float32
        o = q.new_empty(B, H, Tq, hdv)
        lse = q.new_empty(B, H, Tq, dtype=acc)
        m, ms = _mask_arg(mask, q, Tk)
        grid = (triton.cdiv(Tq, block_m), B * H)
        fwd[grid](q, k, v, o, lse, m,
                  q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
                  v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
                  lse.stride(0), lse.stride(1), *ms,
                  H, H // Hkv, Tq, Tk, hd, hdv, scale, Tk - Tq,
                  CAUSAL=causal, HAS_MASK=mask is not None, IEEE=q.dtype == torch.float32,
                  BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=_pow2(hd), BLOCK_DV=_pow2(hdv))
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.mask, ctx.causal, ctx.scale, ctx.blocks = mask, causal, scale, (block_m, block_n)
        return o

    @staticmethod
    def backward(ctx, do):
        pre, dkdv, dqk = _bwd_preprocess, _bwd_dkdv, _bwd_dq
        q, k, v, o, lse = ctx.saved_tensors
        (do,) = _lastdim_contiguous(do)
        block_m, block_n = ctx.blocks
        B, H, Tq, hd = q.shape
        Hkv, Tk, hdv = k.size(1), k.size(2), v.size(-1)
        mask, causal, scale = ctx.mask, ctx.causal, ctx.scale
        m, ms = _mask_arg(mask, q, Tk)
        dl = torch.empty_like(lse)
        pre[(triton.cdiv(Tq, block_m), B * H)](
            o, do, dl, o.stride(0), o.stride(1), o.stride(2),
            do.stride(0), do.stride(1), do.stride(2), lse.stride(0), lse.stride(1), H, Tq, hdv,
            BLOCK_M=block_m, BLOCK_DV=_pow2(hdv))
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        common = dict(CAUSAL=causal, HAS_MASK=mask is not None, IEEE=q.dtype == torch.float32,
                      BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=_pow2(hd), BLOCK_DV=_pow2(hdv))
        strides = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
                   v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2),
                   lse.stride(0), lse.stride(1))
        dkdv[(triton.cdiv(Tk, block_n), B * Hkv)](
            q, k, v, do, lse, dl, dk, dv, m, *strides,
            dk.stride(0), dk.stride(1), dk.stride(2), dv.stride(0), dv.stride(1), dv.stride(2),
            *ms, Hkv, H // Hkv, Tq, Tk, hd, hdv, scale, Tk - Tq, **common)
        dqk[(triton.cdiv(Tq, block_m), B * H)](
            q, k, v, do, lse, dl, dq, m, *strides, dq.stride(0), dq.stride(1), dq.stride(2),
            *ms, H, H // Hkv, Tq, Tk, hd, hdv, scale, Tk - Tq, **common)
        return dq, dk, dv, None, None, None, None, None


def flash2_triton(q, k, v, mask=None, causal=True, scale=None, dropout_p=0.0,
                  block_m: int = DEFAULT_BLOCK, block_n: int = DEFAULT_BLOCK):
    """FlashAttention-2 in Triton with the registry's signature: (B, H, Tq, hd_v).

    Block sizes must be powers of two, at least 16 (``tl.dot``'s smallest tile)."""
    _need_triton()
    _check(q, k, v, mask, dropout_p)
    for b in (block_m, block_n):
        if b < 16 or b & (b - 1):
            raise ValueError(f"Triton block sizes must be powers of two >= 16, got {b}")
    if mask is not None:
        causal = False
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    return FlashAttention2Triton.apply(q, k, v, mask, bool(causal), scale, block_m, block_n)
