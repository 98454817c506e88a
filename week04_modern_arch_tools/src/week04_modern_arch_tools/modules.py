"""The Llama-style parts: RMSNorm, grouped-query attention with RoPE, SwiGLU / ReLU^2.

Each subclasses week01's part and keeps its attribute names (``qkv``,
``proj``, ``fc``), so week01's ``Block`` and ``GPT`` build them and week06's
LoRA finds the same layers. Every module has the general ``forward`` over
(B, T, C) and a lean one-token ``step`` over (B, C) rows: plain linears run
as ``torch.mm`` (with a row-major weight copy on a CPU, see
``linear_rows``), q and k are rotated in one go, and each kv group's query
heads read the cache in one kernel call (the cache is never copied per head).
A subclass that overrides ``forward`` (or the projection) but not ``step``
gets week01's generic step, which runs its ``forward``; so a new module type
is always correct, and fast as soon as it has a ``step``. ``step`` is an
inference path: it applies no dropout.

Left out: sliding-window attention, mixture-of-experts MLPs (week08) and
quantised caches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn as nn
import torch.nn.functional as F

from week01_transformer import (
    ATTENTION_KERNELS,
    MLP,
    Block,
    CausalSelfAttention,
    Context,
    attention_kernel,
)
from week01_transformer.modules import _overrides
from week04_modern_arch_tools.config import LlamaConfig
from week04_modern_arch_tools.rope import apply_rope, apply_rope_swapped

_FUSED_RMS = hasattr(F, "rms_norm")

# ---------------------------------------------------------------- fast rows


_ROW_MAJOR = "_decode_row_major"  # where a layer keeps its (in, out) copy: (key, tensor)


def row_major(layer: nn.Linear) -> torch.Tensor:
    """``layer.weight.T`` laid out row-major, (in, out), kept on the layer (made again when
    the weight changes: another tensor, or an in-place update that bumps its version)."""
    w = layer.weight
    key = (w.data_ptr(), w._version)  # another tensor, or the same one written in place
    kept = layer.__dict__.get(_ROW_MAJOR)
    if kept is None or kept[0] != key:
        kept = (key, w.detach().t().contiguous())
        layer.__dict__[_ROW_MAJOR] = kept
    return kept[1]


def linear_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for rows x (B, in): a plain bias-free ``nn.Linear`` runs as one
    ``torch.mm``, on its row-major copy when it keeps one (``Llama.decode_weights``);
    any other layer (LoRA, quantised, or one with forward hooks, such as week10's adapter
    bank) is called as its module, so its hooks run in the one-token step too."""
    if type(layer) is nn.Linear and layer.bias is None and x.dim() == 2 and not (
            layer._forward_hooks or layer._forward_pre_hooks):
        kept = layer.__dict__.get(_ROW_MAJOR)
        if kept is None:
            return torch.mm(x, layer.weight.t())  # (B, out)
        w = layer.weight
        if kept[0] != (w.data_ptr(), w._version):  # the weight changed: copy it again
            return torch.mm(x, row_major(layer))
        return torch.mm(x, kept[1])
    return layer(x)


# ---------------------------------------------------------------- norm


class RMSNorm(nn.Module):
    """``x / sqrt(mean(x^2) + eps) * weight``, computed in float32 like Hugging Face's."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _FUSED_RMS and x.dtype == torch.float32:  # one kernel, the same formula
            return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Rows (B, C) are just another shape: ``forward`` without the module call."""
        if _FUSED_RMS and x.dtype == torch.float32 and type(self).forward is RMSNorm.forward:
            return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)
        return self.forward(x)


def rms_norm(config: LlamaConfig) -> RMSNorm:
    return RMSNorm(config.n_embd, config.norm_eps)


# ---------------------------------------------------------------- attention


@dataclass
class LlamaContext(Context):
    """week01's ``Context`` plus the RoPE angles of the new tokens.

    ``cos`` / ``sin`` (B or 1, 1, T, hd) for the forward pass, computed on first
    use; ``step_cos`` / ``step_sin_rot`` (hd,) or (B, 1, hd) for a one-token step
    (``sin_rot``: ``sin`` with rotate_half's sign folded in, for
    ``apply_rope_swapped``). ``rotary`` holds the tables, ``rows`` the positions:
    a ``slice`` when every row is at the same ones, else a (B, T) tensor.
    """

    rotary: nn.Module | None = None
    rows: object = None
    step_cos: torch.Tensor | None = None
    step_sin_rot: torch.Tensor | None = None

    def _angles(self, table: torch.Tensor) -> torch.Tensor:
        if isinstance(self.rows, slice):
            return table[self.rows][None, None]  # (1, 1, T, hd)
        return table[self.rows][:, None]  # (B, 1, T, hd)

    @cached_property
    def cos(self) -> torch.Tensor:
        return self._angles(self.rotary.cos)

    @cached_property
    def sin(self) -> torch.Tensor:
        return self._angles(self.rotary.sin)


class LlamaAttention(CausalSelfAttention):
    """Grouped-query causal attention with RoPE and optional QK-norm.

    week01 builds ``qkv`` (q heads, then ``n_kv_head`` k heads, then v heads)
    and ``proj``, and runs the registered kernel; this class adds QK-norm and
    RoPE to the projection and the lean ``step``.
    """

    def __init__(self, config: LlamaConfig, layer_idx: int = 0):
        super().__init__(config, layer_idx)
        self.q_norm = RMSNorm(config.head_dim, config.norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(config.head_dim, config.norm_eps) if config.qk_norm else None
        # the lean step computes what forward computes only if the subclass kept our forward
        self._lean = not _overrides(self, "step", LlamaAttention) and not any(
            _overrides(self, name, LlamaAttention) for name in
            ("forward", "project", "split_heads", "attend", "decode_attention"))
        # week01's experiment switches (no 1/sqrt(d) scale, no causal mask) run through
        # week01's generic step, which calls this forward: the lean step assumes the defaults
        self._lean = self._lean and getattr(config, "attn_scale", True) and \
            getattr(config, "causal", True)

    def project(self, x: torch.Tensor, ctx: LlamaContext | None):
        if ctx is None or getattr(ctx, "rotary", None) is None:
            raise ValueError("LlamaAttention needs the model's context (RoPE angles): call the "
                             "model, or pass Llama.context(T, cache) to the block")
        q, k, v = self.split_heads(x)  # (B, H, T, hd), (B, Hkv, T, hd) x2
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return apply_rope(q, ctx.cos, ctx.sin), apply_rope(k, ctx.cos, ctx.sin), v

    def decode_attention(self, q, k, v, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One query per row, (B, H, 1, hd), over every cached key (B, Hkv, Tk, hd).

        The query heads of a group are stacked as the query rows of one kernel
        call against their shared kv head, so the cache is read once and never
        copied n_head / n_kv_head times (repeat_kv would copy it every step).
        ``mask`` (B, 1, 1, Tk), if given, says which keys each row may read.
        """
        B, H, _, hd = q.shape
        qg = q.view(B, self.n_kv_head, H // self.n_kv_head, hd)  # (B, Hkv, rep, hd)
        kernel = ATTENTION_KERNELS.get(self.impl) or attention_kernel(self.impl)
        y = kernel(qg, k, v, mask=mask, causal=False)  # (B, Hkv, rep, hd)
        return y.view(B, H, 1, hd)

    def step(self, x: torch.Tensor, ctx: LlamaContext) -> torch.Tensor:
        """One new token per row: x (B, C) -> (B, C), reading and extending the cache."""
        if not self._lean:
            return super().step(x, ctx)
        B = x.size(0)
        H, Hkv, hd = self.n_head, self.n_kv_head, self.head_dim
        qkv = linear_rows(self.qkv, x).view(B, H + 2 * Hkv, hd)
        qk = qkv[:, : H + Hkv]  # (B, H + Hkv, hd): q heads, then k heads
        if self.q_norm is not None:
            qk = torch.cat((self.q_norm(qk[:, :H]), self.k_norm(qk[:, H:])), dim=1)
        qk = apply_rope_swapped(qk, ctx.step_cos, ctx.step_sin_rot)  # angles (hd,) or (B, 1, hd)
        k_all, v_all = ctx.cache.update(self.layer_idx, qk[:, H:], qkv[:, H + Hkv:])
        mask = ctx.mask if self.window is None else ctx.mask_for(self.window)[0]
        y = self.decode_attention(qk[:, :H, None], k_all, v_all, mask)  # (B, H, 1, hd)
        return linear_rows(self.proj, y.reshape(B, H * hd))  # (B, C)


# ---------------------------------------------------------------- MLPs


class SwiGLU(MLP):
    """``down(silu(gate(x)) * up(x))``: a gated MLP (Shazeer 2020), Llama's choice.

    ``fc`` holds gate and up stacked, (2 * intermediate, C): one matmul for both.
    """

    def hidden_size(self, config: LlamaConfig) -> int:
        return config.intermediate_size

    def fc_width(self, hidden: int) -> int:
        return 2 * hidden  # [gate; up]; proj is "down"

    def make_act(self) -> nn.Module:
        return nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc(x).chunk(2, dim=-1)  # (B, T, I) each
        return self.dropout(self.proj(self.act(gate) * up))  # (B, T, C)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        if type(self).forward is not SwiGLU.forward:
            return self.forward(x)
        gate, up = linear_rows(self.fc, x).chunk(2, dim=-1)  # (B, I) each
        return linear_rows(self.proj, F.silu(gate) * up)  # (B, C)


class ReLU2MLP(MLP):
    """``proj(relu(fc(x))^2)``: nanochat's MLP (So et al. 2021, Primer)."""

    def hidden_size(self, config: LlamaConfig) -> int:
        return config.intermediate_size

    def make_act(self) -> nn.Module:
        return nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x)).square()))  # (B, T, C)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        if type(self).forward is not ReLU2MLP.forward:
            return self.forward(x)
        return linear_rows(self.proj, F.relu(linear_rows(self.fc, x)).square())  # (B, C)


def llama_mlp(config: LlamaConfig, layer_idx: int = 0) -> MLP:
    return SwiGLU(config, layer_idx) if config.mlp == "swiglu" else ReLU2MLP(config, layer_idx)


# ---------------------------------------------------------------- the block


class LlamaBlock(Block):
    """Pre-RMSNorm block: x + attn(norm(x)), then x + mlp(norm(x)).

    week01's ``Block`` builds it from the three class attributes below and
    runs both its ``forward`` and its ``step``.
    """

    attention_cls = LlamaAttention
    mlp_cls = staticmethod(llama_mlp)
    norm = staticmethod(rms_norm)
