"""week01_transformer: a GPT written from scratch, proven equal to Hugging Face GPT-2.

- ``GPTConfig``, ``GPT``: the decoder-only transformer (explicit or SDPA attention),
  ``GPT.from_hf`` / ``GPT.to_hf`` for ``transformers.GPT2LMHeadModel``, ``generate``
- ``CausalSelfAttention``, ``MLP``, ``Block``: its pieces (week04 subclasses them)
- ``filter_logits``, ``sample_next``: top-k / top-p filtering and the one-token draw of
  ``generate`` (week04's cached generation draws with the same function)
- ``CharTokenizer``: a character-level ``shared.Tokenizer``
- ``attention_maps``, ``plot_attention``: per-head attention weights and their plot
- ``python -m week01_transformer.train_char``: a char-level training run on pydocs
"""

from week01_transformer.attention_maps import attention_maps, plot_attention
from week01_transformer.model import (
    ATTENTION_IMPLS,
    GPT,
    MLP,
    PRESETS,
    Block,
    CausalSelfAttention,
    GPTConfig,
    filter_logits,
    sample_next,
    sampling_generator,
)
from week01_transformer.tokenizer import CharTokenizer

__all__ = [
    "GPT", "GPTConfig", "PRESETS", "ATTENTION_IMPLS",
    "CausalSelfAttention", "MLP", "Block", "filter_logits", "sample_next",
    "sampling_generator",
    "CharTokenizer", "attention_maps", "plot_attention",
]
