"""The week's model: week04's ``Llama`` with MLA attention and MoE MLPs, layer by layer.

``SotaBlock`` is week04's ``LlamaBlock`` with two parts chosen from the config:
``make_attention`` gives ``MLAttention`` (``attn_type="mla"``) or week04's grouped-query
``LlamaAttention`` (``"gqa"``); ``make_mlp`` gives ``moe.MoE`` where
``config.layer_uses_moe(i)`` (layers ``first_k_dense_replace`` on, when ``moe``) and
week04's SwiGLU / ReLU^2 MLP elsewhere. ``SotaModel`` is week04's ``Llama`` with
``SotaConfig``, rotary tables for MLA's ``qk_rope_head_dim`` channels (YaRN as an option)
and, for MLA, ``LatentCache`` as its cache. Everything else is week01's and week04's:
the forward, the one-token ``step`` through each module's ``step``, generation through
week01's decoding loop, ``shared.load_model`` (checkpoints record the class by import
path), and week03's Trainer (``moe.moe_loss_fn`` adds the routers' auxiliary losses).

Presets (``SotaConfig.preset(name)``, ``SOTA_PRESETS``): ``"test"`` for unit tests,
``"tiny"`` (about 1.5M parameters, trains on a CPU in minutes), ``"d20-mla-moe"``
(nanochat's d20 width with DeepSeek-V3's attention and router, for GPUs).
Weights move to and from ``transformers.DeepseekV3ForCausalLM`` (``hf.py``).

Left out: multi-token prediction, FP8, expert parallelism.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from week01_transformer import KVCache
from week04_modern_arch_tools import Llama
from week04_modern_arch_tools.modules import LlamaAttention, LlamaBlock, llama_mlp, row_major
from week08_sota.config import SOTA_PRESETS, SotaConfig
from week08_sota.mla import LatentCache, LatentRotary, MLAttention

__all__ = ["SotaModel", "SotaBlock", "SotaConfig", "SOTA_PRESETS", "preset_table"]


class SotaBlock(LlamaBlock):
    """week04's pre-RMSNorm block with MLA or GQA attention and a dense or MoE MLP."""

    def make_attention(self, config: SotaConfig, layer_idx: int) -> nn.Module:
        if config.attn_type == "mla":
            return MLAttention(config, layer_idx)
        return LlamaAttention(config, layer_idx)

    def make_mlp(self, config: SotaConfig, layer_idx: int) -> nn.Module:
        if config.layer_uses_moe(layer_idx):
            from week08_sota.moe import MoE  # imported here: the dense model needs none of it

            return MoE(config, layer_idx)
        return llama_mlp(config, layer_idx)


class SotaModel(Llama):
    """week04's ``Llama`` with week08's parts; ``forward(idx) -> logits`` (``shared.LanguageModel``)."""

    config_class = SotaConfig
    block_cls = SotaBlock

    def __init__(self, config: SotaConfig):
        super().__init__(config)
        if config.attn_type == "mla":  # RoPE turns the qk_rope_head_dim channels only
            self.rotary = LatentRotary(config)

    def new_cache(self, batch_size: int, max_len: int | None = None,
                  pad: torch.Tensor | None = None) -> LatentCache | KVCache:
        """MLA: a ``LatentCache`` (d_c + d_r numbers per token per layer); GQA: week01's
        ``KVCache``. Either way ``shared.Cache``, read by week01's decoding loop."""
        if self.config.attn_type != "mla":
            return super().new_cache(batch_size, max_len, pad)
        self.decode_weights()
        return LatentCache.for_model(self, batch_size, max_len, pad)

    def decode_weights(self) -> dict[int, torch.Tensor]:
        """week04's row-major copies for a CPU decode, plus MLA's query and compression
        projections (``q_proj`` or ``q_a`` / ``q_b``, ``kv_a``), which every step multiplies."""
        out = super().decode_weights()
        if not out:  # a GPU, or more weights than decode_copy_limit
            return out
        for block in self.blocks:
            for name in ("q_proj", "q_a", "q_b", "kv_a"):
                m = getattr(block.attn, name, None)
                if type(m) is nn.Linear and m.bias is None:
                    out[id(m)] = row_major(m)
        return out

    def kv_cache_bytes(self, batch_size: int = 1, seq_len: int | None = None,
                       bytes_per_value: int = 2) -> int:
        """What the cache of ``batch_size`` rows of ``seq_len`` tokens holds (bf16 default)."""
        return self.config.kv_cache_bytes(batch_size, seq_len, bytes_per_value)

    def flops_per_token(self, block_size: int) -> float:
        """Training FLOPs per token, what week03's ``flops_per_token`` (and the Trainer's MFU)
        believes: 6 * N_active + 6 * L * T * H * (qk_head_dim + v_head_dim).

        N_active: week03's count (parameters, the embedding only when it is also the head)
        less the routed experts a token does not use, (n_routed - k) * 3 * C * I_moe per MoE
        layer. The attention term is PaLM's 12 L C T with MLA's own head sizes (scores over
        qk_head_dim channels, the weighted sum over v_head_dim): for GQA, 2 * head_dim * H = 2C.
        """
        c = self.config
        embed = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)}
        heads = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)}
        n = sum(p.numel() for p in self.parameters() if id(p) not in embed or id(p) in heads)
        n -= sum((c.n_routed_experts - c.num_experts_per_tok) * 3 * c.n_embd
                 * c.moe_intermediate_size for i in range(c.n_layer) if c.layer_uses_moe(i))
        qk, v = (c.qk_head_dim, c.v_head_dim) if c.attn_type == "mla" else (c.head_dim,) * 2
        return 6.0 * n + 6.0 * c.n_layer * block_size * c.n_head * (qk + v)

    # -- Hugging Face conversion (implemented in week08_sota.hf)
    @classmethod
    def from_hf(cls, model, attention: str = "sdpa") -> SotaModel:
        """A SotaModel holding the weights of a ``transformers.DeepseekV3ForCausalLM``."""
        from week08_sota.hf import sota_from_hf

        return sota_from_hf(model, attention=attention, cls=cls)

    def to_hf(self, attn_implementation: str = "eager"):
        """A ``transformers.DeepseekV3ForCausalLM`` holding this model's weights."""
        from week08_sota.hf import sota_to_hf

        return sota_to_hf(self, attn_implementation=attn_implementation)


def preset_table() -> str:
    """A text table of every preset: layers, width, attention, experts, parameters."""
    lines = [f"{'preset':<12} {'layers':>6} {'n_embd':>6} {'heads':>5} {'attn':>4} {'d_c+d_r':>7} "
             f"{'experts':>9} {'vocab':>7} {'params':>15}"]
    for name, c in SOTA_PRESETS.items():
        experts = f"{c.num_experts_per_tok}/{c.n_routed_experts}" if c.moe else "dense"
        lines.append(f"{name:<12} {c.n_layer:>6} {c.n_embd:>6} {c.n_head:>5} {c.attn_type:>4} "
                     f"{c.latent_cache_elements():>7} {experts:>9} {c.vocab_size:>7} "
                     f"{c.num_params():>15,}")
    return "\n".join(lines)
