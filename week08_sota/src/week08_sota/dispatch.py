"""The MoE's dispatch: every (token, expert) pair to its expert, without a loop over tokens.

``expert_mix`` orders the pairs choice-rank-major (every token's 1st choice, then its 2nd),
sorts them stably by expert so each expert's tokens are one contiguous slice, cuts each
expert to its capacity, and runs the stacked SwiGLU experts either as two grouped matmuls
(``F.grouped_mm`` / ``torch._grouped_mm``, where the build runs them: CUDA in bf16, the CPU
in float32) or as one loop over the experts (``_GroupedLinear``: one autograd node for all
of them); the weighted outputs go back to their tokens with ``index_add_``. ``moe.py`` (the
layer, routing, balancing) calls it.

Left out: all-to-all dispatch across processes (the MoE track).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["expert_mix"]


def _matmul_dtype(x: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(x.device.type):  # grouped_mm is not autocast-aware
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


_GROUPED_MM = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)


def _grouped_ok(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> bool:
    """Whether this build's grouped matmul runs here: CUDA in bf16 (rows of 8 values), or
    the CPU in float32 (rows of 4 values, 16-byte aligned tensors, no autocast). On the CPU
    the weight must be a transposed view, (N, out, in) read as (N, in, out), as here:
    torch 2.13's CPU backward fails for a contiguous (N, in, out) weight."""
    if _GROUPED_MM is None:
        return False
    dt = _matmul_dtype(x)
    if x.is_cuda:
        return dt == torch.bfloat16 and gate_up.size(-1) % 8 == 0 and down.size(-1) % 8 == 0
    return (x.device.type == "cpu" and dt == x.dtype == gate_up.dtype == torch.float32
            and x.size(-1) % 4 == 0 and down.size(-1) % 4 == 0
            and all(t.data_ptr() % 16 == 0 for t in (x, gate_up, down)))


class _GroupedLinear(torch.autograd.Function):
    """y[rows of expert e] = x[rows of e] @ w[e].T for rows grouped by expert: (M, in) -> (M, out).

    One autograd node for all experts: backward writes each expert's weight gradient into
    one (N, out, in) tensor (indexing ``w[e]`` per expert would make autograd build and add
    a full-size zero gradient for each of them), and no ``torch.cat`` of the outputs.
    """

    @staticmethod
    def forward(ctx, x, w, counts):
        ctx.save_for_backward(x, w)
        ctx.counts = counts
        out = x.new_empty(x.size(0), w.size(1))
        start = 0
        with torch.autocast(x.device.type, enabled=False):
            for e, n in enumerate(counts):
                if n:
                    torch.mm(x[start:start + n], w[e].t(), out=out[start:start + n])
                    start += n
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        grad = grad.contiguous()
        gx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        gw = torch.zeros_like(w) if ctx.needs_input_grad[1] else None
        start = 0
        with torch.autocast(x.device.type, enabled=False):
            for e, n in enumerate(ctx.counts):
                if n:
                    g = grad[start:start + n]
                    if gx is not None:
                        torch.mm(g, w[e], out=gx[start:start + n])
                    if gw is not None:
                        torch.mm(g.t(), x[start:start + n], out=gw[e])
                    start += n
        return gx, gw, None


def expert_mix(x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor,
               gate_up: torch.Tensor, down: torch.Tensor, cap: int | None = None,
               grouped: bool | None = None):
    """sum_j weights[t, j] * expert_{idx[t, j]}(x[t]) for every token t: x (S, C) -> (S, C).

    ``gate_up`` (N, 2I, C) and ``down`` (N, C, I) are the stacked SwiGLU experts. The S*k
    (token, expert) pairs are ordered choice-rank-major (all 1st choices, then all 2nd),
    stably sorted by expert, cut to ``cap`` per expert, and each expert runs once on its
    contiguous slice. Returns (out (S, C), routed (N,) pairs per expert before the cut,
    dropped: pairs cut).
    """
    S, C = x.shape
    N, k = gate_up.size(0), idx.size(1)
    flat_e = idx.t().reshape(-1)                                  # (k*S,) rank-major
    tokens = torch.arange(S, device=x.device).repeat(k)           # token of each pair
    w = weights.t().reshape(-1)
    order = torch.argsort(flat_e, stable=True)                    # group pairs by expert
    routed = torch.bincount(flat_e, minlength=N)                  # (N,)
    counts, dropped = routed, 0
    if cap is not None and bool((routed > cap).any()):
        start = torch.cumsum(routed, 0) - routed                  # first slot of each expert
        rank = torch.arange(order.numel(), device=x.device) - start[flat_e[order]]
        order = order[rank < cap]
        counts = routed.clamp(max=cap)
        dropped = int(routed.sum() - counts.sum())
    tok = tokens[order]
    xs = x[tok]                                                   # (M, C) grouped by expert
    if grouped is None:
        grouped = _grouped_ok(xs, gate_up, down)
    if grouped:  # two grouped matmuls over every expert's slice at once
        dt = _matmul_dtype(xs)
        offs = torch.cumsum(counts, 0).to(torch.int32)
        g, u = _GROUPED_MM(xs.to(dt), gate_up.to(dt).transpose(1, 2), offs=offs).chunk(2, dim=-1)
        ys = _GROUPED_MM(F.silu(g) * u, down.to(dt).transpose(1, 2), offs=offs)
    else:  # one loop over the experts, each on its contiguous slice of rows
        dt, n = _matmul_dtype(xs), counts.tolist()
        g, u = _GroupedLinear.apply(xs.to(dt), gate_up.to(dt), n).chunk(2, dim=-1)
        ys = _GroupedLinear.apply(F.silu(g) * u, down.to(dt), n)
    ys = ys * w[order, None].to(ys.dtype)
    out = x.new_zeros(S, C).index_add_(0, tok, ys.to(x.dtype))
    return out, routed, dropped
