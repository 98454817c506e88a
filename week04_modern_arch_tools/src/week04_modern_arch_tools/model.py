"""A Llama-style transformer built by extending week01's GPT, with a KV cache.

What changes from GPT-2 (week01) to a modern decoder, one knob each:

- RMSNorm instead of LayerNorm (no mean subtraction, no bias);
- rotary position embeddings (RoPE) instead of learned positions: each head's
  query and key are rotated by an angle proportional to their position, so
  ``q_m . k_n`` depends only on ``m - n``. Base ``rope_base`` and optional
  ``rope_scaling`` ("linear" position interpolation or Llama-3's "llama3");
- grouped-query attention: ``n_kv_head`` key/value heads shared by the
  ``n_head`` query heads (``n_kv_head == n_head`` is plain multi-head,
  ``1`` is multi-query), which shrinks the KV cache by ``n_head / n_kv_head``;
- a SwiGLU MLP (``down(silu(gate(x)) * up(x))``) or nanochat's ReLU^2 MLP;
- optional QK-norm (RMSNorm on each head's q and k before RoPE);
- no biases anywhere, tied or untied embeddings, optional logit soft-capping
  (``cap * tanh(logits / cap)``).

The RoPE layout is Hugging Face's "rotate half" one (the first and second
halves of a head are the two coordinates of each rotated pair), so weights
move to and from ``transformers.LlamaForCausalLM`` without a permutation;
``hf.interleaved_to_half`` converts weights from Meta's interleaved layout.

The classes subclass week01's (``CausalSelfAttention``, ``MLP``, ``Block``,
``GPT``) and keep their attribute names; they reuse its attention kernels,
weight init, input checks, loss, sampling filters and the no-cache
``generate``. The cache path (``KVCache``) prefills the prompt once and then
feeds one token per step through ``Llama.decode``, a lean step that works on
(B, C) rows with as few kernels as it can (on a CPU a small model's step is
mostly dispatch overhead); left padding (``pad``) lets prompts of different
lengths share one batch.

Left out on purpose: sliding-window attention, mixture of experts, paged or
quantised caches, and the speculative decoding of later weeks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from week01_transformer import (
    GPT,
    MLP,
    Block,
    CausalSelfAttention,
    GPTConfig,
    sample_next,
    sampling_generator,
)

MLP_KINDS = ("swiglu", "relu2")
_TORCH = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
_FUSED_RMS = hasattr(F, "rms_norm")
ROPE_TYPES = ("linear", "llama3")

# ---------------------------------------------------------------- config


@dataclass
class LlamaConfig(GPTConfig):
    """Every size and switch of the Llama-style model (extends week01's ``GPTConfig``).

    ``n_kv_head=None`` means ``n_head`` (multi-head attention);
    ``intermediate_size=None`` means 8/3 * n_embd rounded up to a multiple of
    64 for SwiGLU (same parameter count as a 4x GELU MLP) and 4 * n_embd for
    ReLU^2. ``rope_scaling`` is None or a dict such as
    ``{"rope_type": "linear", "factor": 2.0}``.
    """

    vocab_size: int = 32000
    block_size: int = 2048
    n_layer: int = 16
    n_head: int = 16
    n_embd: int = 1024
    bias: bool = False
    attention: str = "sdpa"
    n_kv_head: int | None = None
    intermediate_size: int | None = None
    rope_base: float = 10000.0
    rope_scaling: dict | None = None
    qk_norm: bool = False
    mlp: str = "swiglu"
    tie_embeddings: bool = False
    logit_softcap: float | None = None
    norm_eps: float = 1e-6

    def __post_init__(self):
        super().__post_init__()
        if self.bias:
            raise ValueError("LlamaConfig.bias must be False: the Llama family has no biases")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if isinstance(self.n_kv_head, bool) or not isinstance(self.n_kv_head, int) or \
                self.n_kv_head <= 0 or self.n_head % self.n_kv_head:
            valid = [h for h in range(1, self.n_head + 1) if self.n_head % h == 0]
            raise ValueError(f"LlamaConfig.n_kv_head must divide n_head ({self.n_head}): each kv "
                             f"head serves n_head / n_kv_head query heads; valid: {valid}, "
                             f"got {self.n_kv_head!r}")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"LlamaConfig.mlp must be one of {MLP_KINDS}, got {self.mlp!r}")
        if self.intermediate_size is None:
            if self.mlp == "swiglu":
                self.intermediate_size = 64 * math.ceil(8 * self.n_embd / 3 / 64)
            else:
                self.intermediate_size = 4 * self.n_embd
        if not isinstance(self.intermediate_size, int) or self.intermediate_size <= 0:
            raise ValueError(f"LlamaConfig.intermediate_size must be a positive int, "
                             f"got {self.intermediate_size!r}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim = n_embd / n_head = {self.head_dim} must be even: RoPE "
                             "rotates pairs of channels")
        if not self.rope_base > 1.0:
            raise ValueError(f"LlamaConfig.rope_base must be > 1, got {self.rope_base!r}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if kind not in ROPE_TYPES or float(self.rope_scaling.get("factor", 0)) <= 0:
                raise ValueError(f"LlamaConfig.rope_scaling must be None or a dict with rope_type "
                                 f"in {ROPE_TYPES} and a positive factor, got {self.rope_scaling!r}")
        if self.logit_softcap is not None and not self.logit_softcap > 0:
            raise ValueError(f"LlamaConfig.logit_softcap must be None or > 0, "
                             f"got {self.logit_softcap!r}")

    # -- sizes
    def num_params(self) -> int:
        """Parameter count computed from the config (no tensors are allocated)."""
        C, hd, L = self.n_embd, self.head_dim, self.n_layer
        attn = C * (self.n_head + 2 * self.n_kv_head) * hd + self.n_head * hd * C
        mlp = (3 if self.mlp == "swiglu" else 2) * C * self.intermediate_size
        norms = 2 * C + (2 * hd if self.qk_norm else 0)
        emb = self.vocab_size * C * (1 if self.tie_embeddings else 2)
        return emb + L * (attn + mlp + norms) + C

    def kv_cache_bytes(self, batch_size: int = 1, seq_len: int | None = None,
                       bytes_per_value: int = 2) -> int:
        """Bytes of K and V for ``batch_size`` sequences of ``seq_len`` tokens (bf16 default)."""
        T = self.block_size if seq_len is None else seq_len
        return 2 * self.n_layer * batch_size * self.n_kv_head * T * self.head_dim * bytes_per_value

    # -- constructors
    @classmethod
    def from_depth(cls, depth: int, vocab_size: int = 65536, block_size: int = 2048,
                   aspect_ratio: int = 64, head_dim: int = 128, **overrides) -> LlamaConfig:
        """nanochat's one-knob family: width = ``aspect_ratio * depth``, heads of ``head_dim``.

        The defaults are nanochat's flavour of the architecture (ReLU^2 MLP,
        QK-norm, untied embeddings, logits soft-capped at 15); override any
        field, e.g. ``mlp="swiglu", qk_norm=False, logit_softcap=None`` for a
        model that converts to Hugging Face's Llama.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
            raise ValueError(f"depth must be a positive int, got {depth!r}")
        n_embd = aspect_ratio * depth
        n_head = max(1, -(-n_embd // head_dim))  # ceil: heads of (about) head_dim channels
        while n_embd % n_head:
            n_head += 1
        kw = dict(vocab_size=vocab_size, block_size=block_size, n_layer=depth, n_head=n_head,
                  n_embd=n_embd, mlp="relu2", qk_norm=True, tie_embeddings=False,
                  logit_softcap=15.0)
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def presets(cls) -> dict[str, LlamaConfig]:
        """``LLAMA_PRESETS``: week01's ``preset(name, **overrides)`` looks names up here."""
        return LLAMA_PRESETS


LLAMA_PRESETS: dict[str, LlamaConfig] = {
    # CPU sizes (vocab_size is a placeholder the tokenizer overrides)
    "test": LlamaConfig(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32),
    "tiny": LlamaConfig.from_depth(2, vocab_size=512, block_size=256, head_dim=32),
    "small": LlamaConfig.from_depth(4, vocab_size=4096, block_size=512, head_dim=64),
    "d8": LlamaConfig.from_depth(8, vocab_size=8192, block_size=1024),
    # nanochat's speedrun sizes: width 64 * depth, vocab 2^16, 2048 context
    "d12": LlamaConfig.from_depth(12),
    "d20": LlamaConfig.from_depth(20),  # ~561M parameters
    "d26": LlamaConfig.from_depth(26),  # ~1.08B parameters
    "1b": LlamaConfig.from_depth(26),
    # Meta's Llama-3.2-1B shape (GQA 32/8, SwiGLU, tied), HF-convertible
    "llama3.2-1b": LlamaConfig(vocab_size=128256, block_size=8192, n_layer=16, n_head=32,
                               n_kv_head=8, n_embd=2048, intermediate_size=8192,
                               rope_base=500000.0, tie_embeddings=True, norm_eps=1e-5,
                               rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                             "original_max_position_embeddings": 8192}),
}


def preset_table() -> str:
    """A text table of every preset: depth, width, heads, parameters (computed, not allocated)."""
    lines = [f"{'preset':<12} {'layers':>6} {'n_embd':>6} {'heads':>5} {'kv':>3} {'mlp':>6} "
             f"{'vocab':>7} {'params':>15}"]
    for name, c in LLAMA_PRESETS.items():
        lines.append(f"{name:<12} {c.n_layer:>6} {c.n_embd:>6} {c.n_head:>5} {c.n_kv_head:>3} "
                     f"{c.mlp:>6} {c.vocab_size:>7} {c.num_params():>15,}")
    return "\n".join(lines)


# ---------------------------------------------------------------- RMSNorm and RoPE


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


def rope_inv_freq(head_dim: int, base: float = 10000.0, scaling: dict | None = None) -> torch.Tensor:
    """The rotation speed of each channel pair: ``base^(-2i/d)``, (head_dim/2,), optionally scaled.

    "linear" divides every frequency by ``factor`` (position interpolation);
    "llama3" divides only the low frequencies (long wavelengths) and blends
    smoothly between ``low_freq_factor`` and ``high_freq_factor``.
    """
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    if scaling is None:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv / factor
    # llama3: wavelengths longer than the original context / low_freq_factor are slowed down
    lo, hi = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    old = float(scaling.get("original_max_position_embeddings", 8192))
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old / hi) & (wavelen <= old / lo)
    return torch.where(medium, blended, scaled)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + d/2) of ``x`` (B, H, T, hd) by the angles in cos/sin."""
    return x * cos + rotate_half(x) * sin


def apply_rope_swapped(x: torch.Tensor, cos: torch.Tensor, sin_rot: torch.Tensor) -> torch.Tensor:
    """``apply_rope`` in four kernels instead of six, bit for bit the same result.

    ``rotate_half(x) * sin`` is ``(-x2 * sin1, x1 * sin2)``; swapping the two
    halves (one ``flip`` of a (..., 2, hd/2) view) and multiplying by
    ``sin_rot = (-sin1, sin2)`` gives the same products, since negation is exact.
    """
    hd = x.size(-1)
    swapped = x.unflatten(-1, (2, hd // 2)).flip(-2).flatten(-2)  # (x2, x1)
    return x * cos + swapped * sin_rot


class Rotary(nn.Module):
    """cos/sin tables for positions 0..block_size-1, (block_size, head_dim) each."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        inv = rope_inv_freq(config.head_dim, config.rope_base, config.rope_scaling)
        pos = torch.arange(config.block_size, dtype=torch.float32)
        angles = torch.outer(pos, inv)  # (T, hd/2): angle of pair i at position t
        angles = torch.cat((angles, angles), dim=-1)  # (T, hd): pair i lives at i and i + hd/2
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        # sin with rotate_half's sign folded in: rotate_half(x) * sin == swap_halves(x) * sin_rot
        sign = torch.ones(config.head_dim)
        sign[: config.head_dim // 2] = -1.0
        self.register_buffer("sin_rot", angles.sin() * sign, persistent=False)

    def forward(self, pos) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for positions ``pos`` (T,) -> (1, 1, T, hd), or (B, T) -> (B, 1, T, hd);
        a ``range`` is sliced instead of gathered."""
        if isinstance(pos, range):
            return (self.cos[pos.start:pos.stop][None, None],
                    self.sin[pos.start:pos.stop][None, None])
        cos, sin = self.cos[pos], self.sin[pos]
        if pos.dim() == 1:
            return cos[None, None], sin[None, None]
        return cos[:, None], sin[:, None]


# ---------------------------------------------------------------- modules


class LlamaAttention(CausalSelfAttention):
    """Grouped-query causal attention with RoPE, optional QK-norm and a KV cache.

    Keeps week01's attribute names (``qkv``, ``proj``, ``mask``) and its two
    kernels for plain causal attention; a cache or left padding goes through
    ``masked_attention`` with an explicit boolean mask.
    """

    def __init__(self, config: LlamaConfig):
        nn.Module.__init__(self)  # week01's __init__ would build a GPT-2 sized qkv first
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.dropout = config.dropout
        self.impl = config.attention
        qkv_out = (config.n_head + 2 * config.n_kv_head) * config.head_dim
        self.qkv = nn.Linear(config.n_embd, qkv_out, bias=False)  # q heads, then k, then v
        self.proj = nn.Linear(config.n_head * config.head_dim, config.n_embd, bias=False)
        self.q_norm = RMSNorm(config.head_dim, config.norm_eps) if config.qk_norm else None
        self.k_norm = RMSNorm(config.head_dim, config.norm_eps) if config.qk_norm else None
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def split_heads(self, x: torch.Tensor):
        B, T, _ = x.shape
        hd = self.head_dim
        q, k, v = self.qkv(x).split([self.n_head * hd, self.n_kv_head * hd, self.n_kv_head * hd], 2)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_kv_head, hd).transpose(1, 2)  # (B, Hkv, T, hd)
        v = v.view(B, T, self.n_kv_head, hd).transpose(1, 2)  # (B, Hkv, T, hd)
        return q, k, v

    def repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Hkv, T, hd) -> (B, H, T, hd): query head h reads kv head h // (H / Hkv)."""
        rep = self.n_head // self.n_kv_head
        if rep == 1:
            return x
        B, Hkv, T, hd = x.shape
        return x[:, :, None].expand(B, Hkv, rep, T, hd).reshape(B, Hkv * rep, T, hd)

    def decode_attention(self, q, k, v, mask: torch.Tensor | None = None) -> torch.Tensor:
        """One query per row, (B, H, 1, hd), over every cached key (B, Hkv, Tk, hd).

        The query heads of a group are stacked as rows of one matmul against
        their shared kv head, so the cache is read once and never copied
        n_head / n_kv_head times (repeat_kv would copy it every step).
        ``mask`` (B, 1, 1, Tk), if given, says which keys each row may read.
        """
        B, H, _, hd = q.shape
        qg = q.view(B, self.n_kv_head, H // self.n_kv_head, hd)  # (B, Hkv, rep, hd)
        if self.impl == "sdpa":  # the group's rows are just more queries
            return F.scaled_dot_product_attention(qg, k, v, attn_mask=mask).view(B, H, 1, hd)
        scores = (qg @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))  # (B, Hkv, rep, Tk)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        y = F.softmax(scores, dim=-1) @ v  # (B, Hkv, rep, hd)
        return y.view(B, H, 1, hd)

    def masked_attention(self, q, k, v, allowed) -> torch.Tensor:
        """Attention where ``allowed`` (B, 1, Tq, Tk) says which keys each query may read
        (``True``: all of them)."""
        if allowed is True:
            allowed = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device)
        if self.impl == "sdpa":
            p = self.dropout if self.training else 0.0
            return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, H, Tq, Tk)
        scores = scores.masked_fill(~allowed, float("-inf"))
        return self.attn_dropout(F.softmax(scores, dim=-1)) @ v  # (B, H, Tq, hd)

    def forward(self, x, cos, sin, allowed=None, cache=None, layer: int = 0):
        B, T, _ = x.shape
        q, k, v = self.split_heads(x)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, Hkv, pos + T, hd): everything seen so far
        if allowed is None:  # plain causal attention (Tq == Tk): week01's kernels
            k, v = self.repeat_kv(k), self.repeat_kv(v)
            y = self.sdpa_attention(q, k, v) if self.impl == "sdpa" else \
                self.explicit_attention(q, k, v)
        elif allowed is True and T == 1:  # a decode step: every cached key is visible
            y = self.decode_attention(q, k, v)
        else:
            y = self.masked_attention(q, self.repeat_kv(k), self.repeat_kv(v), allowed)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)
        return self.resid_dropout(self.proj(y))


class SwiGLU(MLP):
    """``down(silu(gate(x)) * up(x))``: a gated MLP (Shazeer 2020), Llama's choice.

    ``fc`` holds gate and up stacked, (2 * intermediate, C): one matmul for both.
    """

    def __init__(self, config: LlamaConfig):
        nn.Module.__init__(self)
        self.fc = nn.Linear(config.n_embd, 2 * config.intermediate_size, bias=False)  # [gate; up]
        self.act = nn.SiLU()
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)  # "down"
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.fc(x).chunk(2, dim=-1)  # (B, T, I) each
        return self.dropout(self.proj(self.act(gate) * up))  # (B, T, C)


class ReLU2MLP(MLP):
    """``proj(relu(fc(x))^2)``: nanochat's MLP (So et al. 2021, Primer)."""

    def __init__(self, config: LlamaConfig):
        nn.Module.__init__(self)
        self.fc = nn.Linear(config.n_embd, config.intermediate_size, bias=False)
        self.act = nn.ReLU()
        self.proj = nn.Linear(config.intermediate_size, config.n_embd, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x)).square()))  # (B, T, C)


def rms_norm(config: LlamaConfig) -> RMSNorm:
    return RMSNorm(config.n_embd, config.norm_eps)


def llama_mlp(config: LlamaConfig) -> MLP:
    return SwiGLU(config) if config.mlp == "swiglu" else ReLU2MLP(config)


class LlamaBlock(Block):
    """Pre-RMSNorm block: x + attn(norm(x)), then x + mlp(norm(x)).

    week01's ``Block.__init__`` builds it from the three class attributes below.
    """

    attention_cls = LlamaAttention
    mlp_cls = staticmethod(llama_mlp)
    norm = staticmethod(rms_norm)

    def forward(self, x, cos, sin, allowed=None, cache=None, layer: int = 0):
        x = x + self.attn(self.ln_1(x), cos, sin, allowed, cache, layer)  # (B, T, C)
        return x + self.mlp(self.ln_2(x))


def _linear(layer: nn.Module, x: torch.Tensor, weights: dict | None = None) -> torch.Tensor:
    """``layer(x)`` for rows x (B, in), skipping the module call for a plain ``nn.Linear``
    (LoRA and quantised layers keep theirs); ``weights`` may hold its (in, out) copy."""
    if type(layer) is nn.Linear and layer.bias is None and x.dim() == 2:
        w_t = weights.get(id(layer)) if weights else None
        return torch.mm(x, layer.weight.t() if w_t is None else w_t)  # (B, out)
    return layer(x)


_ROW_MAJOR = "_decode_row_major"  # where a layer keeps its (in, out) copy: (key, tensor)


def _row_major(layer: nn.Linear) -> torch.Tensor:
    """``layer.weight.T`` laid out row-major, (in, out); kept on the layer until the weight
    changes (another tensor, or an in-place update that bumps its version counter)."""
    w = layer.weight
    key = (w.data_ptr(), w._version, w.dtype, w.shape)
    kept = layer.__dict__.get(_ROW_MAJOR)
    if kept is None or kept[0] != key:
        kept = (key, w.detach().t().contiguous())
        layer.__dict__[_ROW_MAJOR] = kept
    return kept[1]


def _rms(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, skipping the module call for our ``RMSNorm``."""
    return norm.forward(x) if type(norm) is RMSNorm else norm(x)


def _mlp(mlp: MLP, x: torch.Tensor, weights: dict | None = None) -> torch.Tensor:
    """The MLP of a (B, C) batch of rows, without module calls where it can."""
    if type(mlp) is SwiGLU:
        gate, up = _linear(mlp.fc, x, weights).chunk(2, dim=-1)  # (B, I) each
        return _linear(mlp.proj, F.silu(gate) * up, weights)
    if type(mlp) is ReLU2MLP:
        return _linear(mlp.proj, F.relu(_linear(mlp.fc, x, weights)).square(), weights)
    return mlp(x)


# ---------------------------------------------------------------- KV cache


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated.

    ``k``/``v`` are (n_layer, B, n_kv_head, max_len, head_dim); ``pos`` is how
    many positions are filled (the same for every row). ``pad`` (B,) counts the
    left-padding positions of each row: they are never attended to, and a
    row's rotary positions start after its padding.
    """

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, head_dim: int, max_len: int,
                 device=None, dtype=torch.float32, pad: torch.Tensor | None = None):
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.layers = list(zip(self.k.unbind(0), self.v.unbind(0)))  # views, made once
        self.max_len = max_len
        self.pos = 0
        if pad is None:
            pad = torch.zeros(batch_size, dtype=torch.long, device=device)
        if pad.shape != (batch_size,):
            raise ValueError(f"pad must have shape ({batch_size},), got {tuple(pad.shape)}")
        self.pad = pad.to(device=device, dtype=torch.long)
        self.padded = bool(self.pad.any())  # read once: no host sync per decode step

    @classmethod
    def for_model(cls, model: Llama, batch_size: int, max_len: int | None = None,
                  pad: torch.Tensor | None = None) -> KVCache:
        c = model.config
        p = model.tok_emb.weight
        if max_len is not None and not 0 < max_len <= c.block_size:
            raise ValueError(f"max_len must be in 1..{c.block_size} (block_size), got {max_len}")
        return cls(c.n_layer, batch_size, c.n_kv_head, c.head_dim, max_len or c.block_size,
                   p.device, p.dtype, pad)

    @property
    def batch_size(self) -> int:
        return self.k.size(1)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store the new (B, Hkv, T, hd) keys/values at ``pos``; return all of them so far."""
        T = k.size(2)
        self.k[layer, :, :, self.pos:self.pos + T] = k
        self.v[layer, :, :, self.pos:self.pos + T] = v
        return self.k[layer, :, :, :self.pos + T], self.v[layer, :, :, :self.pos + T]

    def advance(self, n: int) -> None:
        self.pos += n

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


# ---------------------------------------------------------------- the model


class Llama(GPT):
    """The Llama-style decoder: ``forward(idx) -> logits``; satisfies ``shared.LanguageModel``."""

    block_cls = LlamaBlock
    norm = staticmethod(rms_norm)
    decode_copy_limit: int = 2**30  # bytes of linear weights up to which decode_weights copies

    def __init__(self, config: LlamaConfig):
        nn.Module.__init__(self)  # GPT's __init__ adds learned positions and always ties
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"Llama needs a LlamaConfig, got {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.rotary = Rotary(config)
        self.blocks = nn.ModuleList(self.block_cls(config) for _ in range(config.n_layer))
        self.ln_f = self.norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)  # week01's: N(0, 0.02) for linears and embeddings
        resid_std = 0.02 / math.sqrt(2 * config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=resid_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=resid_std)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once each; ``non_embedding`` drops the embedding (and untied head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    # -- forward
    def positions(self, T: int, start: int, pad: torch.Tensor | None, device,
                  padded: bool | None = None):
        """Rotary positions (T,) or (B, T) and the attention mask: None for plain causal
        attention, True when every key is visible (one new token, no padding), else a
        boolean (B or 1, 1, T, start + T) tensor."""
        if padded is None:
            padded = pad is not None and bool(pad.any())
        if not padded:
            if start == 0:
                return range(0, T), None
            if T == 1:
                return range(start, start + 1), True
        absolute = torch.arange(start, start + T, device=device)  # (T,)
        if not padded:
            keys = torch.arange(start + T, device=device)
            return absolute, (keys[None, :] <= absolute[:, None])[None, None]  # (1, 1, T, Tk)
        pos = (absolute[None, :] - pad[:, None]).clamp(min=0)  # (B, T): count from the first real
        keys = torch.arange(start + T, device=device)  # (Tk,)
        causal = keys[None, None, :] <= absolute[None, :, None]  # (1, T, Tk)
        real = keys[None, None, :] >= pad[:, None, None]  # (B, 1, Tk): not a padding key
        self_key = keys[None, None, :] == absolute[None, :, None]  # padding queries read themselves
        return pos, (causal & (real | self_key))[:, None]  # (B, 1, T, Tk)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None,
                pad: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V) for ``idx`` (B, T).

        With a ``cache``, ``idx`` continues the tokens already in it (their keys
        and values are read from the cache and the new ones appended). ``pad``
        (B,) marks left padding when there is no cache (a cache carries its own).
        """
        start = 0 if cache is None else cache.pos
        if cache is not None:
            pad = cache.pad
            if idx.dim() == 2 and start + idx.size(1) > cache.max_len:
                raise ValueError(f"the cache holds {cache.max_len} positions: {start} are used and "
                                 f"{idx.size(1)} more do not fit; start a new cache")
            if idx.dim() == 2 and idx.size(0) != cache.batch_size:
                raise ValueError(f"batch size {idx.size(0)} differs from the cache's "
                                 f"{cache.batch_size}")
        self.check_input(idx)  # week01's checks: (B, T) integer ids in range, T <= block_size
        return self.run(idx, cache, pad)

    def run(self, idx: torch.Tensor, cache: KVCache | None = None,
            pad: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """``forward`` without the input checks (the decode loop's hot path); ``last_only``
        computes the logits of the last position only, (B, 1, V)."""
        start = 0 if cache is None else cache.pos
        T = idx.size(1)
        pos, allowed = self.positions(T, start, cache.pad if cache is not None else pad,
                                      idx.device, cache.padded if cache is not None else None)
        cos, sin = self.rotary(pos)
        x = self.drop(self.tok_emb(idx))  # (B, T, C): no position embedding, RoPE does it
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, allowed, cache, i)
        if cache is not None:
            cache.advance(T)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if self.config.logit_softcap is not None:
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        return logits

    def decode(self, token: torch.Tensor, cache: KVCache,
               weights: dict | None = None) -> torch.Tensor:
        """One decode step: next-token logits (B, V) for ``token`` (B, 1) after the cache.

        The same numbers as ``run(token, cache)[:, -1]`` up to float rounding
        (a test holds them equal to 1e-5), computed with few kernels: rows are
        (B, C) matrices, plain linears and norms are called as functions (a
        LoRA or quantised layer is still called as its module), RoPE rotates q
        and k in one go, and each kv group's query heads read the cache in one
        attention call (forward hooks of the bypassed modules do not run).
        ``weights`` from ``decode_weights()`` makes the matmuls faster on a
        CPU. Subclasses with other blocks or their own ``run``, and dropout in
        training mode, take ``run``.
        """
        if not self._lean_decode():
            return self.run(token, cache)[:, -1, :]
        c = self.config
        B, pos = token.size(0), cache.pos
        H, Hkv, hd = c.n_head, c.n_kv_head, c.head_dim
        if pos >= cache.max_len:
            raise ValueError(f"the cache holds {cache.max_len} positions and all are used; "
                             "start a new cache")
        rot = self.rotary
        if cache.padded:  # each row counts positions from its first real token
            rows = (pos - cache.pad).clamp(min=0)  # (B,)
            cos, sin = rot.cos[rows][:, None], rot.sin_rot[rows][:, None]  # (B, 1, hd)
            keys = torch.arange(pos + 1, device=token.device)  # (Tk,)
            mask = ((keys[None] >= cache.pad[:, None]) | (keys[None] == pos))[:, None, None]
        else:
            cos, sin, mask = rot.cos[pos], rot.sin_rot[pos], None  # (hd,) each
        x = F.embedding(token.view(B), self.tok_emb.weight)  # (B, C)
        for i, block in enumerate(self.blocks):
            attn = block.attn
            qkv = _linear(attn.qkv, _rms(block.ln_1, x), weights).view(B, H + 2 * Hkv, hd)
            qk = qkv[:, : H + Hkv]  # (B, H + Hkv, hd): q heads, then k heads
            if attn.q_norm is not None:
                qk = torch.cat((attn.q_norm(qk[:, :H]), attn.k_norm(qk[:, H:])), dim=1)
            qk = apply_rope_swapped(qk, cos, sin)
            k_all, v_all = cache.layers[i]  # (B, Hkv, max_len, hd) each
            k_all.select(2, pos).copy_(qk[:, H:])
            v_all.select(2, pos).copy_(qkv[:, H + Hkv:])
            y = attn.decode_attention(qk[:, :H, None], k_all.narrow(2, 0, pos + 1),
                                      v_all.narrow(2, 0, pos + 1), mask)  # (B, H, 1, hd)
            x = x + _linear(attn.proj, y.reshape(B, H * hd), weights)  # (B, C)
            x = x + _mlp(block.mlp, _rms(block.ln_2, x), weights)
        cache.advance(1)
        logits = _linear(self.lm_head, _rms(self.ln_f, x), weights)  # (B, V)
        if c.logit_softcap is not None:
            logits = c.logit_softcap * torch.tanh(logits / c.logit_softcap)
        return logits

    def decode_weights(self) -> dict[int, torch.Tensor]:
        """Row-major (in, out) copies of the plain linear weights, keyed by ``id(layer)``.

        A one-row-per-sequence matmul ``x @ W.T`` runs 10-25% faster on a CPU
        when ``W.T`` is laid out row-major (measured in
        ``benchmarks/generation.py``). Each copy is kept on its layer and made
        again only when the weight changes (an in-place update bumps the
        tensor's version counter; loading, optimizer steps and adapter merges
        all do; writing through ``.data`` does not, so call
        ``release_decode_weights()`` after that). The price is a second copy of
        the weights in memory, so it is empty above ``decode_copy_limit`` bytes
        of weights, and on a GPU (cuBLAS reads either layout at full speed).
        """
        if self.tok_emb.weight.device.type != "cpu" or not self._lean_decode():
            return {}
        layers = [self.lm_head] + [m for b in self.blocks for m in (b.attn.qkv, b.attn.proj,
                                                                     b.mlp.fc, b.mlp.proj)]
        linears = [m for m in layers if type(m) is nn.Linear and m.bias is None]  # not LoRA's
        if sum(m.weight.nbytes for m in linears) > self.decode_copy_limit:
            return {}
        return {id(m): _row_major(m) for m in linears}

    def release_decode_weights(self) -> None:
        """Drop the copies ``decode_weights`` keeps (they come back on the next call)."""
        for m in self.modules():
            m.__dict__.pop(_ROW_MAJOR, None)

    def _lean_decode(self) -> bool:
        """Whether ``decode`` may take its lean path: our own ``run`` and block types, no live
        dropout (a subclass that changes any of them gets ``run``)."""
        if (self.training and self.config.dropout > 0) or type(self).run is not Llama.run:
            return False
        return all(type(b) is LlamaBlock and type(b.attn) is LlamaAttention and
                   type(b.mlp) in (SwiGLU, ReLU2MLP) for b in self.blocks)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        self.check_input(idx)
        return self.drop(self.tok_emb(idx))

    # -- generation
    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 use_cache: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens to ``idx`` (B, T); returns (B, T + new).

        Same contract as week01's ``GPT.generate`` (temperature 0 = greedy, a
        seeded generator, the same top-k/top-p filters), and the same tokens:
        ``use_cache=True`` prefills the prompt once and then runs one token per
        step. When prompt + new tokens exceed ``block_size`` the sliding window
        needs every position recomputed, so that case uses the no-cache path.
        """
        if not use_cache or idx.size(1) + max_new_tokens > self.config.block_size:
            return super().generate(idx, max_new_tokens, temperature, top_k, top_p, seed,
                                    generator)
        generator = sampling_generator(idx, max_new_tokens, temperature, seed, generator)
        if max_new_tokens == 0:
            return idx
        was_training = self.training
        self.eval()
        try:
            cache = KVCache.for_model(self, idx.size(0), idx.size(1) + max_new_tokens)
            self.check_input(idx)
            logits = self.run(idx, cache, last_only=True)[:, -1, :]  # prefill: (B, V)
            weights = self.decode_weights()
            out = [idx]
            for step in range(max_new_tokens):
                nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (B, 1)
                out.append(nxt)
                if step + 1 < max_new_tokens:
                    logits = self.decode(nxt, cache, weights)  # one token; the cache has the rest
        finally:
            self.train(was_training)
        return torch.cat(out, dim=1)

    # -- Hugging Face conversion (implemented in week04_modern_arch_tools.hf)
    @classmethod
    def from_hf(cls, model, attention: str = "sdpa") -> Llama:
        """A Llama holding the weights of a ``transformers.LlamaForCausalLM``."""
        from week04_modern_arch_tools.hf import llama_from_hf

        return llama_from_hf(model, attention=attention, cls=cls)

    def to_hf(self, attn_implementation: str = "eager"):
        """A ``transformers.LlamaForCausalLM`` holding this model's weights."""
        from week04_modern_arch_tools.hf import llama_to_hf

        return llama_to_hf(self, attn_implementation=attn_implementation)

