"""Multi-head Latent Attention (DeepSeek-V2, arXiv:2405.04434 section 2.1) and its latent cache.

Every token is compressed into one latent ``c_kv`` of ``d_c = kv_lora_rank`` numbers
(``kv_a`` then an RMSNorm); each head's no-position key and its value are decompressed
from it by ``kv_b`` (W_UK and W_UV stacked). Position lives apart (decoupled RoPE): each
head's query has a rotary part of ``d_r = qk_rope_head_dim`` channels, and the rotary
key is one ``d_r`` vector per token, computed from x by ``kv_a`` too and shared by every
head. So a token needs only ``d_c + d_r`` cached numbers per layer (DeepSeek-V2: 512 + 64
= 576, against 2 * 128 heads * 128 = 32,768 for multi-head attention of that size).
Queries come from x directly (``q_proj``), or through their own latent of
``q_lora_rank`` channels (``q_a``, an RMSNorm, ``q_b``) when it is not 0.

Two ways to attend, the same numbers (tests hold them equal to 1e-5 in float32):

- naive (``forward``, and ``step`` when ``config.mla_absorb`` is False): decompress the
  per-head keys ``[k_nope_h ; k_rope]`` and values ``v_h`` of every cached latent, then
  ordinary attention through the registered kernel (``config.attention``);
- absorbed (``step`` when ``config.mla_absorb``): ``q_nope_h . (W_UK_h c) = (W_UK_h^T
  q_nope_h) . c``, so W_UK is folded into the query, which then attends over the latent
  itself: one shared "key" ``[c_kv ; k_rope]`` of ``d_c + d_r`` channels and one shared
  "value" ``c_kv`` for all heads (multi-query attention in latent space); W_UV is applied
  to the (B, H, d_c) result. Nothing per head is ever materialised for the cache.

The softmax scale is ``1 / sqrt(qk_nope_head_dim + qk_rope_head_dim)``; with YaRN
(``rope_scaling={"rope_type": "yarn", ...}``) it is multiplied by ``mscale(factor,
mscale_all_dim)^2`` and the rotary tables by ``mscale(factor, mscale) / mscale(factor,
mscale_all_dim)``, as DeepSeek's and Hugging Face's code do. RoPE uses week04's
"rotate half" layout; ``hf.py`` permutes DeepSeek's interleaved rotary channels into it.

``LatentCache`` is ``shared.Cache`` for MLA: one (n_layer, B, max_len, d_c + d_r) buffer,
``update(layer, c_kv, k_rope)`` returns every latent and rotary key so far. Both paths
read the same cache: the naive step decompresses the whole cache at every step (what
Hugging Face does), which costs time, not memory.

Left out: DeepSeek's reference "naive" mode that caches full per-head K and V (that is
multi-head attention's memory, measured in ``benchmarks/kv_cache.py`` as MHA), folding
W_UV into the output projection, and FP8 latents.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from week01_transformer import Context, attention_kernel
from week01_transformer.cache import CacheClock, check_sizes
from week04_modern_arch_tools.modules import RMSNorm, linear_rows
from week04_modern_arch_tools.rope import apply_rope, apply_rope_swapped, rope_inv_freq
from week08_sota.config import SotaConfig

LATENT_NORM_EPS = 1e-6  # DeepSeek's (and Hugging Face's) q_a / kv_a norms keep RMSNorm's default

# ---------------------------------------------------------------- YaRN and the rotary tables


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature ``0.1 * mscale * ln(factor) + 1`` (1 when factor <= 1)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def yarn_inv_freq(dim: int, base: float, scaling: dict) -> tuple[torch.Tensor, float]:
    """YaRN (Peng et al. 2023): each pair's speed, (dim/2,), and the factor on cos/sin.

    Pairs that turn more than ``beta_fast`` times over the original context keep their
    speed (extrapolation), those that turn fewer than ``beta_slow`` times are slowed by
    ``factor`` (interpolation), with a linear ramp between (Hugging Face's
    ``_compute_yarn_parameters``, ``truncate=True``).
    """
    factor = float(scaling["factor"])
    old = float(scaling["original_max_position_embeddings"])
    beta_fast = float(scaling.get("beta_fast") or 32)
    beta_slow = float(scaling.get("beta_slow") or 1)
    mscale, mscale_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
    if scaling.get("attention_factor") is not None:
        attention = float(scaling["attention_factor"])
    elif mscale and mscale_all:
        attention = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all)
    else:
        attention = yarn_mscale(factor)

    def correction_dim(rotations: float) -> float:  # the pair index that turns `rotations` times
        return dim * math.log(old / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = math.floor(correction_dim(beta_fast)), math.ceil(correction_dim(beta_slow))
    if scaling.get("truncate", True) is False:
        low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp  # 1: keep the speed, 0: slow down by factor
    speed = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    return speed / factor * (1 - extrapolate) + speed * extrapolate, attention


def softmax_scale(config: SotaConfig) -> float:
    """``1 / sqrt(qk_head_dim)``, times ``mscale(factor, mscale_all_dim)^2`` under YaRN."""
    scale = config.qk_head_dim ** -0.5
    s = config.rope_scaling
    if s is not None and s.get("rope_type", s.get("type")) == "yarn" and s.get("mscale_all_dim"):
        scale *= yarn_mscale(float(s["factor"]), float(s["mscale_all_dim"])) ** 2
    return scale


class LatentRotary(nn.Module):
    """week04's ``Rotary`` tables (``cos``, ``sin``, ``sin_rot``) for the ``qk_rope_head_dim``
    rotary channels of MLA, with YaRN as an option; (block_size, qk_rope_head_dim) each."""

    def __init__(self, config: SotaConfig):
        super().__init__()
        dim, s = config.qk_rope_head_dim, config.rope_scaling
        if s is not None and s.get("rope_type", s.get("type")) == "yarn":
            inv, attention = yarn_inv_freq(dim, config.rope_base, s)
        else:
            inv, attention = rope_inv_freq(dim, config.rope_base, s), 1.0
        pos = torch.arange(config.block_size, dtype=torch.float32)
        angles = torch.outer(pos, inv)  # (T, dim/2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, dim): pair i at i and i + dim/2
        sign = torch.ones(dim)
        sign[: dim // 2] = -1.0
        self.register_buffer("cos", angles.cos() * attention, persistent=False)
        self.register_buffer("sin", angles.sin() * attention, persistent=False)
        self.register_buffer("sin_rot", angles.sin() * attention * sign, persistent=False)


# ---------------------------------------------------------------- the latent cache


class LatentCache(CacheClock):
    """``shared.Cache`` for MLA: per layer, each token's latent ``c_kv`` (d_c) and its rotary
    key (d_r), side by side in one preallocated (n_layer, B, max_len, d_c + d_r) buffer.

    ``update(layer, c_kv, k_rope)`` takes (B, T, d_c) and (B, T, d_r) (one token may come as
    (B, d_c), (B, d_r)) and returns every latent and rotary key so far, (B, pos + T, d_c)
    and (B, pos + T, d_r) views; ``joint(layer)`` is the two side by side, (B, pos, d_c +
    d_r), what the absorbed step reads as its keys. The clock, left padding and
    ``positions`` are week01's ``CacheClock``, shared with its ``KVCache``.
    """

    def __init__(self, n_layer: int, batch_size: int, kv_lora_rank: int, rope_dim: int,
                 max_len: int, device=None, dtype=torch.float32, pad: torch.Tensor | None = None):
        check_sizes("LatentCache", n_layer=n_layer, batch_size=batch_size,
                    kv_lora_rank=kv_lora_rank, rope_dim=rope_dim, max_len=max_len)
        self.kv_lora_rank, self.rope_dim = kv_lora_rank, rope_dim
        self.kv = torch.zeros(n_layer, batch_size, max_len, kv_lora_rank + rope_dim,
                              device=device, dtype=dtype)
        self._start(batch_size, max_len, pad, device)
        self._views()

    @classmethod
    def for_model(cls, model, batch_size: int, max_len: int | None = None,
                  pad: torch.Tensor | None = None) -> LatentCache:
        """A cache shaped for ``model`` (its config's layers, kv_lora_rank, qk_rope_head_dim)."""
        c = model.config
        p = model.tok_emb.weight
        return cls(c.n_layer, batch_size, c.kv_lora_rank, c.qk_rope_head_dim,
                   cls.checked_max_len(model, max_len), p.device, p.dtype, pad)

    def _views(self) -> None:
        self.layers = list(self.kv.unbind(0))  # per-layer (B, max_len, d_c + d_r) views

    # -- the protocol
    @property
    def batch_size(self) -> int:
        return self.kv.size(1)

    def update(self, layer: int, c_kv: torch.Tensor, k_rope: torch.Tensor):
        """Store the new latents and rotary keys at ``pos``; return all so far (see the class)."""
        if c_kv.dim() == 2:  # one token per row, as a decode step makes it
            c_kv, k_rope = c_kv[:, None], k_rope[:, None]
        T, dc = c_kv.size(1), self.kv_lora_rank
        if self.pos + T > self.max_len:
            raise ValueError(f"the cache holds {self.max_len} positions: {self.pos} are used and "
                             f"{T} more do not fit; start a new cache")
        end = self.pos + T
        if torch.is_grad_enabled():  # through the base: autograd forbids writes into unbind views
            self.kv[layer, :, self.pos:end, :dc] = c_kv
            self.kv[layer, :, self.pos:end, dc:] = k_rope
            kv = self.kv[layer, :, :end]
        else:
            kv = self.layers[layer]
            new = kv.narrow(1, self.pos, T)  # (B, T, d_c + d_r)
            new[..., :dc].copy_(c_kv)
            new[..., dc:].copy_(k_rope)
            kv = kv.narrow(1, 0, end)
        return kv[..., :dc], kv[..., dc:]  # (B, pos + T, d_c), (B, pos + T, d_r)

    def joint(self, layer: int, end: int | None = None) -> torch.Tensor:
        """(B, end, d_c + d_r): latents and rotary keys side by side (``end``: pos + 1)."""
        end = self.pos + 1 if end is None else end
        if torch.is_grad_enabled():
            return self.kv[layer, :, :end]
        return self.layers[layer].narrow(1, 0, end)

    def _time_buffers(self) -> list[tuple[torch.Tensor, int]]:
        return [(self.kv, 2)]  # (n_layer, B, max_len, d_c + d_r): time is dim 2; ``trim`` moves it

    def nbytes(self) -> int:
        """(d_c + d_r) * n_layer * batch_size * max_len * bytes per number."""
        return self.kv.numel() * self.kv.element_size()

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only batch rows ``rows`` (a 1-D index tensor), in that order."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.kv.device)
        self.kv = self.kv.index_select(1, rows)
        self._set_pad(self.pad.index_select(0, rows))
        self._views()

    def join(self, other: LatentCache) -> None:
        """Append ``other``'s rows after this cache's, aligning the clocks (week01's
        ``KVCache.join``: the cache behind shifts right and its padding grows), so week01's
        ``Decoding.add`` can put new rows into a running MLA batch."""
        if isinstance(other, LatentCache) and (other.kv.shape[0], other.kv.shape[3]) != (
                self.kv.shape[0], self.kv.shape[3]):
            raise ValueError(f"cannot join caches of different models: kv {tuple(self.kv.shape)}"
                             f" vs {tuple(other.kv.shape)} (n_layer, B, max_len, d_c + d_r)")
        shifts = self._join_clock(other)
        self.kv = self._aligned(self.kv, other.kv.to(self.kv), 2, shifts)
        self._joined_pad(other, shifts)
        self._views()


# ---------------------------------------------------------------- attention


class MLAttention(nn.Module):
    """Multi-head Latent Attention: week01/04's attention part (``forward(x, ctx)``,
    ``step(x, ctx)``), see the module docstring.

    Weights (Hugging Face's name in brackets): ``q_proj`` [q_proj] (H * qk_head_dim, C), or
    ``q_a`` [q_a_proj], ``q_norm`` [q_a_layernorm], ``q_b`` [q_b_proj] when q_lora_rank > 0;
    ``kv_a`` [kv_a_proj_with_mqa] (d_c + d_r, C); ``kv_norm`` [kv_a_layernorm] (d_c,);
    ``kv_b`` [kv_b_proj] (H * (qk_nope_head_dim + v_head_dim), d_c): per head, the rows of
    W_UK then of W_UV; ``proj`` [o_proj] (C, H * v_head_dim).
    """

    def __init__(self, config: SotaConfig, layer_idx: int = 0):
        super().__init__()
        if not isinstance(config, SotaConfig):
            raise TypeError(f"MLAttention needs a SotaConfig, got {type(config).__name__}")
        self.layer_idx = layer_idx
        self.n_head = H = config.n_head
        self.d_c, self.d_r = config.kv_lora_rank, config.qk_rope_head_dim
        self.d_nope, self.d_v = config.qk_nope_head_dim, config.v_head_dim
        self.qk_head_dim = config.qk_head_dim
        self.q_lora_rank = config.q_lora_rank
        self.impl = config.attention
        self.absorb = config.mla_absorb
        self.dropout = config.dropout
        self.scale = softmax_scale(config)
        if getattr(config, "sliding_window", None) is not None:
            raise ValueError("MLAttention has no sliding window: set sliding_window=None")
        C = config.n_embd
        if self.q_lora_rank:
            self.q_a = nn.Linear(C, self.q_lora_rank, bias=False)
            self.q_norm = RMSNorm(self.q_lora_rank, LATENT_NORM_EPS)
            self.q_b = nn.Linear(self.q_lora_rank, H * self.qk_head_dim, bias=False)
        else:
            self.q_proj = nn.Linear(C, H * self.qk_head_dim, bias=False)
        self.kv_a = nn.Linear(C, self.d_c + self.d_r, bias=False)
        self.kv_norm = RMSNorm(self.d_c, LATENT_NORM_EPS)
        self.kv_b = nn.Linear(self.d_c, H * (self.d_nope + self.d_v), bias=False)
        self.proj = nn.Linear(H * self.d_v, C, bias=False)
        self.resid_dropout = nn.Dropout(config.dropout)

    # -- the pieces
    def query(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., H * qk_head_dim), through the query latent when there is one."""
        if self.q_lora_rank:
            return linear_rows(self.q_b, self.q_norm(linear_rows(self.q_a, x)))
        return linear_rows(self.q_proj, x)

    def compress(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached part of x (..., C): the normed latent (..., d_c) and the rotary key
        (..., d_r) before RoPE."""
        c_kv, k_rope = linear_rows(self.kv_a, x).split([self.d_c, self.d_r], dim=-1)
        return self.kv_norm(c_kv), k_rope

    def absorbed_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_UK (H, d_nope, d_c) and W_UV (H, d_v, d_c): ``kv_b``'s rows, head by head."""
        w = self.kv_b.weight.view(self.n_head, self.d_nope + self.d_v, self.d_c)
        return w[:, : self.d_nope], w[:, self.d_nope:]

    def decompress(self, c_kv: torch.Tensor, k_rope: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-head keys (B, H, Tk, qk_head_dim) and values (B, H, Tk, d_v) from the latents
        (B, Tk, d_c) and the rotated rotary keys (B, Tk, d_r)."""
        B, Tk, _ = c_kv.shape
        kv = self.kv_b(c_kv).view(B, Tk, self.n_head, self.d_nope + self.d_v).transpose(1, 2)
        k_nope, v = kv.split([self.d_nope, self.d_v], dim=-1)  # (B, H, Tk, d_nope), (.., d_v)
        k_rope = k_rope[:, None].expand(B, self.n_head, Tk, self.d_r)  # one key for every head
        return torch.cat((k_nope, k_rope), dim=-1), v

    def absorbed_attention(self, q_nope, q_rope, c_kv, k_rope, mask=None, causal=True
                           ) -> torch.Tensor:
        """Attention over the latent: q_nope (B, H, T, d_nope), q_rope (B, H, T, d_r), latents
        (B, Tk, d_c), rotated rotary keys (B, Tk, d_r) -> (B, H, T, d_v) per-head outputs.

        ``q_nope_h . k_nope_h = (q_nope_h W_UK_h) . c_kv``: the query moves into latent space,
        where one key ``[c_kv ; k_rope]`` and one value ``c_kv`` serve every head."""
        w_uk, w_uv = self.absorbed_weights()
        q_lat = torch.einsum("bhtn,hnc->bhtc", q_nope, w_uk)  # (B, H, T, d_c)
        q = torch.cat((q_lat, q_rope), dim=-1)  # (B, H, T, d_c + d_r)
        B, H, T, _ = q.shape
        k = torch.cat((c_kv, k_rope), dim=-1)[:, None].expand(B, H, -1, self.d_c + self.d_r)
        v = c_kv[:, None].expand(B, H, -1, self.d_c)
        p = self.dropout if self.training else 0.0
        y_lat = attention_kernel(self.impl)(q, k, v, mask=mask, causal=causal,
                                            scale=self.scale, dropout_p=p)  # (B, H, T, d_c)
        return torch.einsum("bhtc,hvc->bhtv", y_lat, w_uv)  # (B, H, T, d_v)

    # -- the general forward (training, prefill): the naive path
    def forward(self, x: torch.Tensor, ctx: Context | None = None, absorb: bool = False
                ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); ``absorb=True`` attends over the latent instead (the same
        numbers; tests compare the two)."""
        if ctx is None or getattr(ctx, "rotary", None) is None:
            raise ValueError("MLAttention needs the model's context (RoPE angles for "
                             "qk_rope_head_dim channels): call the model, or pass "
                             "SotaModel.context(T, cache) to the block")
        B, T, _ = x.shape
        q = self.query(x).view(B, T, self.n_head, self.qk_head_dim).transpose(1, 2)
        q_nope, q_rope = q.split([self.d_nope, self.d_r], dim=-1)  # (B, H, T, d_nope / d_r)
        c_kv, k_rope = self.compress(x)  # (B, T, d_c), (B, T, d_r)
        q_rope = apply_rope(q_rope, ctx.cos, ctx.sin)
        k_rope = apply_rope(k_rope[:, None], ctx.cos, ctx.sin)[:, 0]  # (B, T, d_r)
        if ctx.cache is not None:
            c_kv, k_rope = ctx.cache.update(self.layer_idx, c_kv, k_rope)  # (B, pos + T, ..)
        mask, causal = ctx.mask_for(None)
        if absorb:
            y = self.absorbed_attention(q_nope, q_rope, c_kv, k_rope, mask, causal)
        else:
            k, v = self.decompress(c_kv, k_rope)
            p = self.dropout if self.training else 0.0
            y = attention_kernel(self.impl)(torch.cat((q_nope, q_rope), dim=-1), k, v, mask=mask,
                                            causal=causal, scale=self.scale, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.d_v)  # (B, T, H * d_v)
        return self.resid_dropout(self.proj(y))  # (B, T, C)

    # -- the one-token step
    def step(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """One new token per row: x (B, C) -> (B, C), reading and extending the latent cache;
        absorbed when ``config.mla_absorb``, else naive."""
        if type(self).forward is not MLAttention.forward:  # a subclass changed forward only
            return self.forward(x[:, None], ctx)[:, 0]
        B, H = x.size(0), self.n_head
        q = self.query(x).view(B, H, self.qk_head_dim)
        c_kv, k_rope = self.compress(x)  # (B, d_c), (B, d_r)
        rope = torch.cat((q[..., self.d_nope:], k_rope[:, None]), dim=1)  # (B, H + 1, d_r)
        rope = apply_rope_swapped(rope, ctx.step_cos, ctx.step_sin_rot)  # angles (d_r,) / (B,1,d_r)
        q_nope, q_rope, k_rope = q[..., : self.d_nope], rope[:, :H], rope[:, H]
        cache = ctx.cache
        c_all, r_all = cache.update(self.layer_idx, c_kv, k_rope)  # (B, Tk, d_c), (B, Tk, d_r)
        mask = ctx.mask  # None, or (B, 1, 1, Tk): the keys each row may read
        kernel = attention_kernel(self.impl)
        if self.absorb:
            w_uk, w_uv = self.absorbed_weights()
            q_lat = torch.bmm(q_nope.transpose(0, 1), w_uk).transpose(0, 1)  # (B, H, d_c)
            q_abs = torch.cat((q_lat, q_rope), dim=-1)[:, None]  # (B, 1, H, d_c + d_r)
            joint = cache.joint(self.layer_idx, c_all.size(1)) if hasattr(cache, "joint") \
                else torch.cat((c_all, r_all), dim=-1)
            # the heads are the query rows of one latent "head": the cache is read once
            y_lat = kernel(q_abs, joint[:, None], joint[:, None, :, : self.d_c], mask=mask,
                           causal=False, scale=self.scale)  # (B, 1, H, d_c)
            y = torch.bmm(y_lat[:, 0].transpose(0, 1), w_uv.transpose(1, 2))  # (H, B, d_v)
            y = y.transpose(0, 1)  # (B, H, d_v)
        else:
            k, v = self.decompress(c_all, r_all)  # (B, H, Tk, qk_head_dim), (B, H, Tk, d_v)
            qh = torch.cat((q_nope, q_rope), dim=-1)[:, :, None]  # (B, H, 1, qk_head_dim)
            y = kernel(qh, k, v, mask=mask, causal=False, scale=self.scale)[:, :, 0]
        return linear_rows(self.proj, y.reshape(B, H * self.d_v))  # (B, C)

    # -- sizes
    def cache_elements_per_token(self) -> int:
        """Numbers this layer caches per token: d_c + d_r."""
        return self.d_c + self.d_r
