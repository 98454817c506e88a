"""week01_transformer: a GPT written from scratch, proven equal to Hugging Face GPT-2.

- ``GPTConfig``, ``GPT``: the decoder-only transformer, built from overridable parts
  (``make_embedding`` / ``make_block`` / ``make_head`` ..., ``Block(config, layer_idx)``),
  ``GPT.from_hf`` / ``GPT.to_hf`` for ``transformers.GPT2LMHeadModel``, ``generate``
- ``CausalSelfAttention``, ``MLP``, ``Block``, ``Context``: its pieces (week04 subclasses them);
  each has a ``forward`` and a one-token ``step``
- ``register_attention``, ``attention_kernel``, ``ATTENTION_KERNELS``: the open kernel
  registry ("explicit", "sdpa", and whatever later weeks add)
- ``KVCache``: the per-layer key/value cache ``model.new_cache`` returns (``shared.Cache``)
- ``Decoding``, ``decode``, ``DecodeConfig``, ``Row``: the one decoding loop (prefill, one
  token per step, stop tokens/strings, forced tokens, rows finishing early)
- ``filter_logits``, ``sample_next``: top-k / top-p filtering and the one-token draw
- ``CharTokenizer``: a character-level ``shared.Tokenizer``
- ``attention_maps``, ``plot_attention``: per-head attention weights and their plot
- ``python -m week01_transformer.train_char``: a char-level training run on pydocs
"""

from week01_transformer.attention import ATTENTION_KERNELS, attention_kernel, register_attention
from week01_transformer.attention_maps import attention_maps, plot_attention
from week01_transformer.cache import KVCache, attention_mask
from week01_transformer.config import PRESETS, GPTConfig
from week01_transformer.decoding import (
    DecodeConfig,
    Decoding,
    Row,
    TokenEvent,
    decode,
    filter_logits,
    generate_ids,
    sample_next,
    sampling_generator,
)
from week01_transformer.model import GPT
from week01_transformer.modules import MLP, Block, CausalSelfAttention, Context, module_step
from week01_transformer.tokenizer import CharTokenizer

__all__ = [
    "GPT", "GPTConfig", "PRESETS",
    "CausalSelfAttention", "MLP", "Block", "Context", "module_step",
    "ATTENTION_KERNELS", "register_attention", "attention_kernel",
    "KVCache", "attention_mask",
    "DecodeConfig", "Decoding", "Row", "TokenEvent", "decode", "generate_ids",
    "filter_logits", "sample_next", "sampling_generator",
    "CharTokenizer", "attention_maps", "plot_attention",
]
