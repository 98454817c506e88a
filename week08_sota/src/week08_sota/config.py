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
        super().__post_init__()
        if self.attn_type not in ATTN_TYPES:
            raise ValueError(f"SotaConfig.attn_type must be one of {ATTN_TYPES}, got {self.attn_type!r}")
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

    @property
    def qk_head_dim(self) -> int:
        """Channels of one head's query and key: the no-position part plus the rotary part."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def layer_uses_moe(self, layer_idx: int) -> bool:
        return self.moe and layer_idx >= self.first_k_dense_replace

    def latent_cache_elements(self) -> int:
        """Numbers cached per token per layer by MLA's absorbed path: d_c + d_rope."""
        return self.kv_lora_rank + self.qk_rope_head_dim
