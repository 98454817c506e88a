"""``SotaConfig``: week04's ``LlamaConfig`` plus Multi-head Latent Attention and MoE knobs.

Attention (``attn_type``): ``"gqa"`` keeps week04's grouped-query attention; ``"mla"`` is
DeepSeek-V2's Multi-head Latent Attention (``mla.py``): keys and values come from a latent
``c_kv`` of ``kv_lora_rank`` numbers per token (with its RMSNorm); queries optionally from a
latent of ``q_lora_rank`` (0: a plain projection); each head's query and key are a
no-position part of ``qk_nope_head_dim`` channels and a rotary part of ``qk_rope_head_dim``
(the rotary key is one per token, shared by every head); values have ``v_head_dim``
channels. The softmax scale is ``1 / sqrt(qk_nope_head_dim + qk_rope_head_dim)`` (times
YaRN's ``mscale`` factor squared when ``rope_scaling`` is YaRN). ``mla_absorb`` picks the
cached decode path: absorbed (attention over the latent) or naive (decompressed K and V).

MLP (``moe``): from layer ``first_k_dense_replace`` on, an ``MoE`` (``moe.py``) with
``n_routed_experts`` experts of width ``moe_intermediate_size``, ``num_experts_per_tok``
chosen per token, ``n_shared_experts`` that every token uses; ``gating`` ``"softmax"``
(Mixtral: top-k of the softmax, renormalised when ``norm_topk_prob``) or ``"sigmoid"``
(DeepSeek-V3: sigmoid scores, top-k by score + a selection-only bias, weights normalised,
times ``routed_scaling_factor``; ``n_group`` / ``topk_group`` restrict the choice to the best
groups of experts); an optional ``capacity_factor`` drops tokens over an expert's capacity.
Balancing: ``aux_loss_alpha`` (Switch/GShard's alpha * N * sum f_i P_i), ``z_loss_coef``
(the router z-loss), and ``bias_update_speed`` (V3's auxiliary-loss-free gamma, applied by
the Trainer hook in ``moe.py``).

Left out: multi-token prediction and V3's FP8 training.
"""

from __future__ import annotations

from dataclasses import dataclass

from week04_modern_arch_tools import LlamaConfig

ATTN_TYPES = ("gqa", "mla")
GATINGS = ("softmax", "sigmoid")


YARN_KEYS = ("factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale",
             "mscale_all_dim", "attention_factor", "truncate")


def _check_yarn(cfg) -> None:
    """DeepSeek's rope_scaling: {"rope_type": "yarn", "factor", "original_max_position_embeddings",
    optional "beta_fast", "beta_slow", "mscale", "mscale_all_dim"}."""
    s = cfg.rope_scaling
    name = f"{type(cfg).__name__}.rope_scaling"
    if cfg.attn_type != "mla":
        raise ValueError(f"{name}: YaRN is implemented for MLA's rotary channels only "
                         "(attn_type='mla'); week04's attention takes 'linear' or 'llama3'")
    unknown = set(s) - set(YARN_KEYS) - {"rope_type", "type"}
    if unknown:
        raise ValueError(f"{name} has unknown YaRN keys {sorted(unknown)}; valid: {YARN_KEYS}")
    for key in ("factor", "original_max_position_embeddings"):
        v = s.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name}['{key}'] must be a positive number for YaRN, got {v!r}")
    for key in ("beta_fast", "beta_slow", "mscale", "mscale_all_dim"):
        v = s.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ValueError(f"{name}['{key}'] must be a non-negative number, got {v!r}")
    if float(s.get("beta_fast") or 32) <= float(s.get("beta_slow") or 1):
        raise ValueError(f"{name}: beta_fast must exceed beta_slow, got {s!r}")


def _positive_int(obj, name: str, zero_ok: bool = False) -> None:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (v == 0 and not zero_ok):
        need = "a non-negative int" if zero_ok else "a positive int"
        raise ValueError(f"{type(obj).__name__}.{name} must be {need}, got {v!r}")


@dataclass
class SotaConfig(LlamaConfig):
    """Every knob of week08's model; see the module docstring. Defaults: a small MLA + MoE."""

    attn_type: str = "mla"
    kv_lora_rank: int = 64
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16
    v_head_dim: int = 32
    mla_absorb: bool = True
    moe: bool = True
    n_routed_experts: int = 8
    n_shared_experts: int = 1
    num_experts_per_tok: int = 2
    moe_intermediate_size: int | None = None  # None: intermediate_size // num_experts_per_tok
    first_k_dense_replace: int = 1
    gating: str = "softmax"
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    capacity_factor: float | None = None
    aux_loss_alpha: float = 0.0
    z_loss_coef: float = 0.0
    bias_update_speed: float = 0.0

    def __post_init__(self):
        # week04 validates "linear" / "llama3"; YaRN (MLA's rotary channels only) is checked here
        scaling = self.rope_scaling
        yarn = isinstance(scaling, dict) and scaling.get("rope_type", scaling.get("type")) == "yarn"
        if yarn:
            self.rope_scaling = None
        try:
            super().__post_init__()
        finally:
            self.rope_scaling = scaling
        if self.attn_type not in ATTN_TYPES:
            raise ValueError(f"SotaConfig.attn_type must be one of {ATTN_TYPES}, got {self.attn_type!r}")
        if yarn:
            _check_yarn(self)
        if self.attn_type == "mla" and self.qk_norm:
            raise ValueError("SotaConfig.qk_norm applies to attn_type='gqa' only: MLA normalises "
                             "its latents (kv_norm, q_norm) instead; set qk_norm=False")
        if self.attn_type == "mla" and not (self.attn_scale and self.causal):
            raise ValueError("SotaConfig: week01's attn_scale=False / causal=False experiments "
                             "apply to attn_type='gqa' only; MLA keeps its own softmax scale "
                             "(1 / sqrt(qk_head_dim), YaRN's mscale) and the causal mask")
        if self.attn_type == "mla" and self.sliding_window is not None:
            raise ValueError("SotaConfig.sliding_window applies to attn_type='gqa' only: set "
                             "sliding_window=None for MLA")
        if self.gating not in GATINGS:
            raise ValueError(f"SotaConfig.gating must be one of {GATINGS}, got {self.gating!r}")
        for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                     "n_routed_experts", "num_experts_per_tok", "n_group", "topk_group"):
            _positive_int(self, name)
        for name in ("q_lora_rank", "n_shared_experts", "first_k_dense_replace"):
            _positive_int(self, name, zero_ok=True)
        if self.qk_rope_head_dim % 2:
            raise ValueError(f"SotaConfig.qk_rope_head_dim must be even (RoPE rotates pairs), "
                             f"got {self.qk_rope_head_dim}")
        if self.moe_intermediate_size is None:
            self.moe_intermediate_size = max(1, self.intermediate_size // self.num_experts_per_tok)
        _positive_int(self, "moe_intermediate_size")
        if self.num_experts_per_tok > self.n_routed_experts:
            raise ValueError(f"SotaConfig.num_experts_per_tok ({self.num_experts_per_tok}) must be "
                             f"at most n_routed_experts ({self.n_routed_experts})")
        if self.n_routed_experts % self.n_group or not self.topk_group <= self.n_group:
            raise ValueError(f"SotaConfig.n_group ({self.n_group}) must divide n_routed_experts "
                             f"({self.n_routed_experts}) and topk_group ({self.topk_group}) be at "
                             "most n_group")
        if self.capacity_factor is not None and not self.capacity_factor > 0:
            raise ValueError(f"SotaConfig.capacity_factor must be None or > 0, "
                             f"got {self.capacity_factor!r}")
        for name in ("aux_loss_alpha", "z_loss_coef", "bias_update_speed"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"SotaConfig.{name} must be >= 0, got {getattr(self, name)!r}")

    @classmethod
    def presets(cls) -> dict[str, SotaConfig]:
        """``SOTA_PRESETS``: ``SotaConfig.preset(name, **overrides)`` looks names up here."""
        return SOTA_PRESETS

    @property
    def qk_head_dim(self) -> int:
        """Channels of one head's query and key: the no-position part plus the rotary part."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def num_params(self) -> int:
        """Parameter count computed from the config (MLA's projections, every expert)."""
        C, L, H = self.n_embd, self.n_layer, self.n_head
        if self.attn_type == "mla":
            dq, dc = self.q_lora_rank, self.kv_lora_rank
            q = (C * dq + dq + dq * H * self.qk_head_dim) if dq else C * H * self.qk_head_dim
            attn = (q + C * (dc + self.qk_rope_head_dim) + dc
                    + dc * H * (self.qk_nope_head_dim + self.v_head_dim) + H * self.v_head_dim * C)
        else:
            hd = self.head_dim
            attn = C * (H + 2 * self.n_kv_head) * hd + H * hd * C + (2 * hd if self.qk_norm else 0)
        dense = (3 if self.mlp == "swiglu" else 2) * C * self.intermediate_size
        Im = self.moe_intermediate_size
        moe = (3 * self.n_routed_experts * C * Im + C * self.n_routed_experts
               + 3 * C * Im * self.n_shared_experts)
        mlps = sum(moe if self.layer_uses_moe(i) else dense for i in range(L))
        emb = self.vocab_size * C * (1 if self.tie_embeddings else 2)
        return emb + L * (attn + 2 * C) + mlps + C

    def kv_cache_bytes(self, batch_size: int = 1, seq_len: int | None = None,
                       bytes_per_value: int = 2) -> int:
        """Bytes the cache holds for ``batch_size`` rows of ``seq_len`` tokens (bf16 default):
        MLA's (kv_lora_rank + qk_rope_head_dim) per token per layer, or week04's K and V."""
        if self.attn_type != "mla":
            return super().kv_cache_bytes(batch_size, seq_len, bytes_per_value)
        T = self.block_size if seq_len is None else seq_len
        return self.latent_cache_elements() * self.n_layer * batch_size * T * bytes_per_value

    def layer_uses_moe(self, layer_idx: int) -> bool:
        return self.moe and layer_idx >= self.first_k_dense_replace

    def latent_cache_elements(self) -> int:
        """Numbers cached per token per layer by MLA's absorbed path: d_c + d_rope."""
        return self.kv_lora_rank + self.qk_rope_head_dim


SOTA_PRESETS: dict[str, SotaConfig] = {
    # unit tests: MLA with a query latent, one dense layer then MoE
    "test": SotaConfig(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=32,
                       intermediate_size=64, kv_lora_rank=16, q_lora_rank=12,
                       qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, n_routed_experts=4,
                       n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=16,
                       first_k_dense_replace=1),
    # a CPU model that trains in minutes (vocab_size is a placeholder the tokenizer overrides)
    "tiny": SotaConfig(vocab_size=512, block_size=256, n_layer=4, n_head=4, n_embd=128,
                       intermediate_size=384, kv_lora_rank=64, q_lora_rank=0,
                       qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
                       n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
                       moe_intermediate_size=96, first_k_dense_replace=1),
    # nanochat's d20 width (1280) with DeepSeek-V3's attention and router, for GPUs
    "d20-mla-moe": SotaConfig(vocab_size=65536, block_size=2048, n_layer=20, n_head=10,
                              n_embd=1280, intermediate_size=3584, kv_lora_rank=512,
                              q_lora_rank=768, qk_nope_head_dim=128, qk_rope_head_dim=64,
                              v_head_dim=128, n_routed_experts=32, n_shared_experts=1,
                              num_experts_per_tok=4, moe_intermediate_size=512,
                              first_k_dense_replace=1, gating="sigmoid", n_group=8,
                              topk_group=4, routed_scaling_factor=2.5,
                              bias_update_speed=0.001),
}
