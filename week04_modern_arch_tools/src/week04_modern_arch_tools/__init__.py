"""week04_modern_arch_tools: a Llama-style model (equal to Hugging Face's Llama) and safe tool use.

- ``LlamaConfig``, ``Llama``: RMSNorm, RoPE (+ scaling), GQA, SwiGLU / ReLU^2, QK-norm,
  soft-capping; ``LlamaConfig.from_depth`` and ``LLAMA_PRESETS`` ("tiny" ... "d20", "1b");
  ``Llama.generate(use_cache=...)``, ``Llama.decode`` (the lean one-token step),
  ``Llama.from_hf`` / ``to_hf`` (``LlamaForCausalLM``)
- ``KVCache``: the per-layer key/value cache behind generation (left padding for batches)
- ``render_conversation``, ``render_for_completion``: chat messages -> ids + loss mask
- ``Calculator``, ``PythonREPL``, ``Search``: ``shared.Tool``s (ast arithmetic, a sandboxed
  interpreter, BM25 over pydocs or your files)
- ``generate_with_tools``: batched, cached generation that runs tool calls as they complete;
  ``ToolDecoding``: the same, streamed as per-step token events
- ``make_tool_dataset``, ``make_fact_store``, ``fact_search``: synthetic tool-use conversations
  (train/test) and the facts task's search tool
- ``fit_tokenizer``, ``finetune``, ``evaluate_tool_use``: the small tool-use fine-tune
"""

from week04_modern_arch_tools.chat import (
    ToolCall,
    ToolDecoding,
    ToolRun,
    generate_with_tools,
    render_conversation,
    render_for_completion,
)
from week04_modern_arch_tools.model import LLAMA_PRESETS, KVCache, Llama, LlamaConfig, preset_table
from week04_modern_arch_tools.sft import evaluate_tool_use, finetune, fit_tokenizer
from week04_modern_arch_tools.tooldata import fact_search, make_fact_store, make_tool_dataset
from week04_modern_arch_tools.tools.calculator import Calculator
from week04_modern_arch_tools.tools.repl import PythonREPL, SandboxConfig
from week04_modern_arch_tools.tools.search import Search

__all__ = [
    "LlamaConfig", "Llama", "KVCache", "LLAMA_PRESETS", "preset_table",
    "render_conversation", "render_for_completion", "generate_with_tools", "ToolDecoding", "ToolCall", "ToolRun",
    "Calculator", "PythonREPL", "SandboxConfig", "Search",
    "make_tool_dataset", "make_fact_store", "fact_search", "fit_tokenizer", "finetune", "evaluate_tool_use",
]
