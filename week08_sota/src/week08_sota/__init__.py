"""week08_sota: Multi-head Latent Attention, FlashAttention-2 and Mixture-of-Experts.

- ``SotaConfig``: week04's ``LlamaConfig`` plus the MLA and MoE knobs
"""

from week08_sota.config import ATTN_TYPES, GATINGS, SotaConfig

__all__ = ["SotaConfig", "ATTN_TYPES", "GATINGS"]
