"""A Llama-style transformer built by extending week01's GPT.

What changes from GPT-2 (week01) to a modern decoder, one knob each
(``LlamaConfig`` in ``config.py``):

- RMSNorm instead of LayerNorm (no mean subtraction, no bias);
- rotary position embeddings (``rope.py``) instead of learned positions;
- grouped-query attention: ``n_kv_head`` key/value heads shared by the
  ``n_head`` query heads, which shrinks the KV cache by ``n_head / n_kv_head``;
- a SwiGLU MLP or nanochat's ReLU^2 MLP; optional QK-norm;
- no biases anywhere, tied or untied embeddings, optional logit soft-capping
  (``cap * tanh(logits / cap)``).

``Llama`` overrides only week01's parts that differ: no learned positions
(``make_positions`` returns None), the RoPE angles in the forward pass's
``Context``, the soft-capped ``head``. Everything else is week01's: the
constructor, the weight init, the input checks, the forward, the one-token
``step`` (each block's and module's own ``step``, ``modules.py``), the cache
(``new_cache`` -> week01's ``KVCache``) and generation through week01's
decoding loop. Weights move to and from ``transformers.LlamaForCausalLM``
(``hf.py``).

Left out on purpose: sliding-window attention, mixture of experts, paged or
quantised caches, and the speculative decoding of later weeks.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from week01_transformer import GPT, KVCache, module_step
from week04_modern_arch_tools.config import LLAMA_PRESETS, MLP_KINDS, LlamaConfig, preset_table
from week04_modern_arch_tools.modules import (
    _ROW_MAJOR,
    LlamaAttention,
    LlamaBlock,
    LlamaContext,
    ReLU2MLP,
    RMSNorm,
    SwiGLU,
    linear_rows,
    llama_mlp,
    rms_norm,
    row_major,
)
from week04_modern_arch_tools.rope import (
    Rotary,
    apply_rope,
    apply_rope_swapped,
    rope_inv_freq,
    rotate_half,
)

__all__ = ["Llama", "LlamaConfig", "KVCache", "LLAMA_PRESETS", "preset_table", "MLP_KINDS",
           "LlamaAttention", "LlamaBlock", "LlamaContext", "RMSNorm", "SwiGLU", "ReLU2MLP",
           "llama_mlp", "rms_norm", "linear_rows", "Rotary", "apply_rope", "apply_rope_swapped",
           "rope_inv_freq", "rotate_half"]


class Llama(GPT):
    """The Llama-style decoder: ``forward(idx) -> logits``; satisfies ``shared.LanguageModel``."""

    config_class = LlamaConfig
    block_cls = LlamaBlock
    norm = staticmethod(rms_norm)
    context_cls = LlamaContext
    decode_copy_limit: int = 2**30  # bytes of linear weights up to which decode_weights copies

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.rotary = Rotary(config)  # cos/sin tables: buffers, not weights

    def make_positions(self, config: LlamaConfig) -> None:
        return None  # RoPE rotates q and k instead

    # -- forward
    def context(self, T: int, cache=None, pad: torch.Tensor | None = None,
                segments: torch.Tensor | None = None) -> LlamaContext:
        """week01's context plus the RoPE angles of the ``T`` new tokens."""
        ctx = super().context(T, cache, pad, segments)
        rot = ctx.rotary = self.rotary
        if ctx.pad is None and ctx.pos is None:  # every row at the same positions
            ctx.rows = slice(ctx.start, ctx.start + T)
            if T == 1:
                ctx.step_cos, ctx.step_sin_rot = rot.cos[ctx.start], rot.sin_rot[ctx.start]
        else:  # each row counts from its first real token (or each packed document from its own)
            ctx.rows = self.positions(ctx, T, rot.cos.device)  # (B, T)
            if T == 1:
                rows = ctx.rows[:, 0]
                ctx.step_cos, ctx.step_sin_rot = rot.cos[rows][:, None], rot.sin_rot[rows][:, None]
        return ctx

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Final RMSNorm, the head, and the optional soft-cap: (..., C) -> (..., V)."""
        x = self.ln_f(x) if x.dim() == 3 else module_step(self.ln_f, x)  # rows in a step
        logits = linear_rows(self.lm_head, x)
        if self.config.logit_softcap is not None:
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        return logits

    def new_cache(self, batch_size: int, max_len: int | None = None,
                  pad: torch.Tensor | None = None) -> KVCache:
        """week01's ``KVCache`` with ``n_kv_head`` heads; on a CPU it also makes the weight
        copies ``decode_weights`` describes, since decoding is about to start."""
        self.decode_weights()
        return super().new_cache(batch_size, max_len, pad)

    def decode_weights(self) -> dict[int, torch.Tensor]:
        """Row-major (in, out) copies of the plain linear weights, keyed by ``id(layer)``.

        A one-row-per-sequence matmul ``x @ W.T`` runs 10-25% faster on a CPU
        when ``W.T`` is laid out row-major (measured in
        ``benchmarks/generation.py``). Each copy is kept on its layer and used
        by ``linear_rows`` in every ``step``; it is made again when the weight
        changes (an in-place update bumps the tensor's version counter; loading,
        optimizer steps and adapter merges all do; writing through ``.data``
        does not, so call ``release_decode_weights()`` after that). The price is
        a second copy of the weights in memory, so there are none above
        ``decode_copy_limit`` bytes of weights, and none on a GPU (cuBLAS reads
        either layout at full speed).
        """
        if self.tok_emb.weight.device.type != "cpu":
            return {}
        layers = [self.lm_head] + [getattr(part, name, None) for b in self.blocks
                                   for part in (b.attn, b.mlp) for name in ("qkv", "fc", "proj")]
        linears = [m for m in layers if type(m) is nn.Linear and m.bias is None]  # not LoRA's
        if sum(m.weight.nbytes for m in linears) > self.decode_copy_limit:
            self.release_decode_weights()
            return {}
        return {id(m): row_major(m) for m in linears}

    def release_decode_weights(self) -> None:
        """Drop the copies ``decode_weights`` keeps (the next ``new_cache`` makes them again)."""
        for m in self.modules():
            m.__dict__.pop(_ROW_MAJOR, None)

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
