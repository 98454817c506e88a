"""week08_sota: Multi-head Latent Attention, FlashAttention-2 and Mixture-of-Experts.

Plugged into week04's model through its seams (nothing in weeks 01-07 is edited):

- ``SotaConfig``, ``SOTA_PRESETS``: week04's ``LlamaConfig`` plus the MLA and MoE knobs;
  presets "test", "tiny" (a CPU model) and "d20-mla-moe" (a GPU size)
- ``SotaModel``, ``SotaBlock``: week04's ``Llama`` with MLA or GQA attention and dense or
  MoE MLPs per layer; ``from_hf`` / ``to_hf`` (``transformers.DeepseekV3ForCausalLM``)
- ``MLAttention``, ``LatentCache``, ``LatentRotary``: DeepSeek-V2's latent attention, its
  naive and absorbed paths, and the d_c + d_r cache (``shared.Cache``)
- ``flash2_torch``, ``flash2_triton``, ``flash_attn``: FlashAttention-2, registered as
  week01 attention kernels of those names (``SotaConfig(attention="flash2_torch")``)
- ``MoE``, ``route``, ``moe_loss_fn``, ``balance_bias_hook``, ``max_violation``: the MoE MLP, its
  auxiliary losses for week03's Trainer and DeepSeek-V3's loss-free bias update (a hook)
"""

from week08_sota.config import ATTN_TYPES, GATINGS, SOTA_PRESETS, SotaConfig
from week08_sota.flash import flash2_torch, flash_attn
from week08_sota.hf import sota_from_hf, sota_to_hf
from week08_sota.mla import LatentCache, LatentRotary, MLAttention, softmax_scale, yarn_inv_freq
from week08_sota.model import SotaBlock, SotaModel, preset_table
from week08_sota.moe import (
    MoE,
    active_param_count,
    balance_bias_hook,
    max_violation,
    moe_aux_loss,
    moe_loss_fn,
    route,
)


def flash2_triton(*args, **kwargs):
    """The Triton FlashAttention-2 kernel (``week08_sota.flash_triton``; needs ``triton``)."""
    from week08_sota.flash_triton import flash2_triton as kernel

    return kernel(*args, **kwargs)


__all__ = [
    "SotaConfig", "SOTA_PRESETS", "ATTN_TYPES", "GATINGS", "SotaModel", "SotaBlock", "preset_table",
    "MLAttention", "LatentCache", "LatentRotary", "softmax_scale", "yarn_inv_freq",
    "sota_from_hf", "sota_to_hf", "flash2_torch", "flash2_triton", "flash_attn",
    "MoE", "moe_loss_fn", "moe_aux_loss", "balance_bias_hook", "max_violation",
    "active_param_count", "route",
]
