"""The parts of week01's GPT: ``Context``, ``CausalSelfAttention``, ``MLP``, ``Block``.

Each is an overridable part of the model contract (see ``model.py``): a
block builds its norms, attention and MLP through ``make_*`` methods from the
layer's config and index; every module has a ``forward`` over (B, T, C) and a
one-token ``step`` over (B, C) rows, and ``module_step`` runs a module that
has no ``step`` through its ``forward``.

Left out: RoPE, grouped-query projections, RMSNorm and gated MLPs (week04).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from week01_transformer.attention import attention_kernel, attention_weights
from week01_transformer.cache import attention_mask
from week01_transformer.config import GPTConfig

# ---------------------------------------------------------------- modules


@dataclass
class Context:
    """What one forward pass tells every block (built once by the model).

    ``cache``: the model's cache or None; ``mask`` / ``causal``: the attention
    kernels' mask contract (``attention_mask``); ``start``: the position of the
    first new token; ``length``: how many new tokens; ``pad``: each row's left
    padding (None when there is none); ``segments`` / ``pos``: the labels and in-document
    positions of documents packed into one row (``forward(idx, segments=...)``), else
    None. ``mask_for(window)`` is the mask of a layer
    that reads only a window of recent positions, made once per pass and window.
    Subclasses add their own fields (week04: the RoPE angles).
    """

    cache: object | None = None
    mask: torch.Tensor | None = None
    causal: bool = True
    start: int = 0
    pad: torch.Tensor | None = None  # (B,) left padding, None when no row is padded
    length: int = 0
    device: torch.device | None = None
    segments: torch.Tensor | None = None  # (B, T) packed documents' labels, or None
    pos: torch.Tensor | None = None  # (B, T) explicit positions (inside each segment), or None
    _windows: dict = field(default_factory=dict, repr=False)

    def mask_for(self, window: int | None, causal: bool = True
                 ) -> tuple[torch.Tensor | None, bool]:
        """``(mask, causal)`` for a layer with this sliding ``window`` (None: the pass's own);
        ``causal=False``: for a layer without the causal mask (``GPTConfig(causal=False)``)."""
        if window is None and causal:
            return self.mask, self.causal
        key = window if causal else (window, False)
        if key not in self._windows:
            self._windows[key] = attention_mask(self.start, self.length, self.pad,
                                                self.pad is not None, window, self.device,
                                                causal=causal, segments=self.segments)
        return self._windows[key]


def _overrides(obj, name: str, base: type) -> bool:
    """Whether ``type(obj)`` redefines ``name`` below ``base``."""
    return getattr(type(obj), name) is not getattr(base, name)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t only sees positions <= t.

    ``n_kv_head`` key/value heads (``config.n_kv_head``, default ``n_head``)
    serve the ``n_head`` query heads; GPT-2 has as many of each. The kernel is
    ``config.attention``, looked up in the registry at each call. A layer whose
    config has a ``sliding_window`` reads only that many recent positions (the
    cache still keeps them all).

    The experiment switches: ``config.causal=False`` drops the causal mask
    (``self.causal``; position t then sees every position), ``config.attn_scale=False``
    multiplies the scores by 1 instead of 1/sqrt(head_dim) (``self.scale``: None means
    the kernel's default 1/sqrt(head_dim)).
    """

    def __init__(self, config: GPTConfig, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.n_kv_head = getattr(config, "n_kv_head", None) or config.n_head
        self.dropout = config.dropout
        self.impl = config.attention
        self.window = getattr(config, "sliding_window", None)
        self.causal = getattr(config, "causal", True)
        self.scale = None if getattr(config, "attn_scale", True) else 1.0
        qkv_out = (self.n_head + 2 * self.n_kv_head) * self.head_dim  # q heads, then k, then v
        self.qkv = nn.Linear(config.n_embd, qkv_out, bias=config.bias)
        self.proj = nn.Linear(self.n_head * self.head_dim, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    # -- multi-head attention is a reshape: C channels = n_head groups of head_dim
    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, H, T, hd) and k, v (B, Hkv, T, hd) for x (B, T, C)."""
        B, T, _ = x.shape
        hd = self.head_dim
        q, k, v = self.qkv(x).split([self.n_head * hd, self.n_kv_head * hd, self.n_kv_head * hd], 2)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_kv_head, hd).transpose(1, 2)  # (B, Hkv, T, hd)
        v = v.view(B, T, self.n_kv_head, hd).transpose(1, 2)  # (B, Hkv, T, hd)
        return q, k, v

    def project(self, x: torch.Tensor, ctx: Context | None):
        """q, k, v for the new tokens (week04 adds QK-norm and RoPE here)."""
        return self.split_heads(x)

    def repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Hkv, T, hd) -> (B, H, T, hd): query head h reads kv head h // (H / Hkv)."""
        rep = self.n_head // self.n_kv_head
        if rep == 1:
            return x
        B, Hkv, T, hd = x.shape
        return x[:, :, None].expand(B, Hkv, rep, T, hd).reshape(B, Hkv * rep, T, hd)

    def weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Causal softmax attention weights (B, H, T, T); row t sums to 1 over keys 0..t
        (over every key when ``self.causal`` is False)."""
        mask, causal = attention_mask(0, q.size(-2), window=self.window, device=q.device,
                                      causal=self.causal)
        return attention_weights(q, self.repeat_kv(k), mask, causal, self.scale)

    def attend(self, q, k, v, ctx: Context | None) -> torch.Tensor:
        """The registered kernel on q (B, H, Tq, hd) and every key/value (B, Hkv, Tk, hd)."""
        if ctx is None:
            ctx = Context(length=q.size(-2), device=q.device)
        mask, causal = ctx.mask_for(self.window) if self.causal else \
            ctx.mask_for(self.window, causal=False)
        p = self.dropout if self.training else 0.0
        # scale only when the config changes it: kernels that predate it keep working
        kw = {} if self.scale is None else {"scale": self.scale}
        return attention_kernel(self.impl)(q, self.repeat_kv(k), self.repeat_kv(v), mask=mask,
                                           causal=causal, dropout_p=p, **kw)  # (B, H, Tq, hd)

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.project(x, ctx)  # (B, H, T, hd), (B, Hkv, T, hd) x2
        if ctx is not None and ctx.cache is not None:
            k, v = ctx.cache.update(self.layer_idx, k, v)  # (B, Hkv, pos + T, hd): all so far
        y = self.attend(q, k, v, ctx)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # heads side by side
        return self.resid_dropout(self.proj(y))  # (B, T, C)

    def step(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """One new token per row, x (B, C) -> (B, C); the generic path runs ``forward``."""
        return self.forward(x[:, None], ctx)[:, 0]


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU -> C.

    Its sizes and activation are parts too: ``hidden_size(config)``, ``fc_width(hidden)``
    (what ``fc`` outputs: a gated MLP stacks gate and up) and ``make_act()``.
    """

    def __init__(self, config: GPTConfig, layer_idx: int = 0):
        super().__init__()
        hidden = self.hidden_size(config)
        self.fc = nn.Linear(config.n_embd, self.fc_width(hidden), bias=config.bias)
        self.act = self.make_act()
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def hidden_size(self, config: GPTConfig) -> int:
        return 4 * config.n_embd

    def fc_width(self, hidden: int) -> int:
        return hidden

    def make_act(self) -> nn.Module:
        return nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))  # (B, T, C)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C) -> (B, C): a position-wise module works on rows as they are."""
        return self.forward(x)


def layer_norm(config: GPTConfig) -> nn.Module:
    return nn.LayerNorm(config.n_embd, bias=config.bias)


def module_step(module: nn.Module, x: torch.Tensor, *args) -> torch.Tensor:
    """``module.step(x, *args)`` when it has one, else its ``forward`` on length-1 rows."""
    step = getattr(module, "step", None)
    if step is not None:
        return step(x, *args)
    return module(x[:, None], *args)[:, 0]


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)).

    Its parts come from ``make_norm``, ``make_attention`` and ``make_mlp``, by
    default the class attributes ``norm``, ``attention_cls`` and ``mlp_cls``
    (called with the layer's config and index), so a subclass swaps a part
    with one line, and ``config.layer_config(layer_idx)`` can vary it by layer.

    ``config.norm_position="post"`` (``self.post_norm``) gives the original
    Transformer's order instead: ``x = ln_1(x + attn(x))``, then
    ``x = ln_2(x + mlp(x))``; the same parts, so the same parameters.
    """

    attention_cls = CausalSelfAttention
    mlp_cls = MLP
    norm = staticmethod(layer_norm)

    def __init__(self, config: GPTConfig, layer_idx: int = 0):
        super().__init__()
        self.layer_idx = layer_idx
        config = config.layer_config(layer_idx)
        self.post_norm = getattr(config, "norm_position", "pre") == "post"
        self.ln_1 = self.make_norm(config)
        self.attn = self.make_attention(config, layer_idx)
        self.ln_2 = self.make_norm(config)
        self.mlp = self.make_mlp(config, layer_idx)

    def make_norm(self, config: GPTConfig) -> nn.Module:
        return self.norm(config)

    def make_attention(self, config: GPTConfig, layer_idx: int) -> nn.Module:
        return self.attention_cls(config, layer_idx)

    def make_mlp(self, config: GPTConfig, layer_idx: int) -> nn.Module:
        return self.mlp_cls(config, layer_idx)

    def forward(self, x: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        if self.post_norm:  # the 2017 order: normalise the stream after each addition
            x = self.ln_1(x + self.attn(x, ctx))  # (B, T, C)
            return self.ln_2(x + self.mlp(x))
        x = x + self.attn(self.ln_1(x), ctx)  # (B, T, C): read from and write to the residual
        return x + self.mlp(self.ln_2(x))

    def step(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """One new token per row: x (B, C) -> (B, C), through each part's own ``step``."""
        if type(self).forward is not Block.forward:  # a subclass changed forward, not step
            return self.forward(x[:, None], ctx)[:, 0]
        m = self._modules  # the parts, without nn.Module's attribute lookup (a hot path)
        ln_1, attn, ln_2, mlp = m["ln_1"], m["attn"], m["ln_2"], m["mlp"]
        if self.post_norm:
            x = module_step(ln_1, x + module_step(attn, x, ctx))
            return module_step(ln_2, x + module_step(mlp, x))
        h = ln_1.step(x) if hasattr(ln_1, "step") else ln_1(x[:, None])[:, 0]
        x = x + (attn.step(h, ctx) if hasattr(attn, "step") else attn(h[:, None], ctx)[:, 0])
        h = ln_2.step(x) if hasattr(ln_2, "step") else ln_2(x[:, None])[:, 0]
        return x + (mlp.step(h) if hasattr(mlp, "step") else mlp(h[:, None])[:, 0])
