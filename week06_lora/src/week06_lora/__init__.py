"""week06_lora: LoRA and QLoRA from scratch, with many named adapters, interchangeable with PEFT.

- ``LoRALinear``: an ``nn.Linear`` with named adapters: ``add_adapter(name, r, alpha,
  dropout=0.0, rslora=False, dora=False)``, ``set_active(names)`` (stacking),
  ``merge(name)`` / ``unmerge(name)``, ``forward(x, adapter_names=[...])`` (mixed batches;
  ``None`` or ``NO_ADAPTER`` = no adapter for that row)
- ``inject_lora(model, targets=None, r=8, alpha=16, adapter="default", ...)``,
  ``set_active_adapters``, ``mixed_batch``, ``merge_adapter`` / ``unmerge_adapter``,
  ``delete_adapter``, ``mark_trainable``, ``trainable_report``
- ``lora_state_dict``, ``save_adapter`` / ``load_adapter`` (atomic, ``shared`` checkpoints)
- ``save_peft_adapter`` / ``load_peft_adapter``: Hugging Face PEFT's folder format
- NF4 from scratch: ``nf4_levels``, ``quantize_nf4`` / ``dequantize_nf4`` (``NF4Weight``),
  ``pack_4bit`` / ``unpack_4bit``, ``dynamic_levels`` (double quantisation), ``fake_quantize``
- QLoRA: ``QLoRALinear``, ``quantize_model``, ``prepare_qlora``, ``base_weight_bytes``

``week06_lora.finetune`` (imported on its own) holds the synthetic fine-tuning harness that the
notebook and ``benchmarks/finetune_compare.py`` use: ``pretrain``, ``finetune``, ``FinetuneConfig``.
"""

from week06_lora.lora import (
    NO_ADAPTER,
    AdapterConfig,
    LoRAAdapter,
    LoRALinear,
    TrainableReport,
    active_adapters,
    adapter_config,
    adapter_names,
    default_targets,
    delete_adapter,
    inject_lora,
    load_adapter,
    lora_layers,
    lora_state_dict,
    mark_trainable,
    merge_adapter,
    mixed_batch,
    save_adapter,
    set_active_adapters,
    trainable_report,
    unmerge_adapter,
)
from week06_lora.nf4 import (
    NF4Weight,
    dequantize_nf4,
    dynamic_levels,
    fake_quantize,
    nf4_levels,
    pack_4bit,
    quantize_blockwise,
    quantize_nf4,
    uniform_levels,
    unpack_4bit,
)
from week06_lora.peft_io import load_peft_adapter, read_peft_config, save_peft_adapter
from week06_lora.qlora import QLoRALinear, base_weight_bytes, prepare_qlora, quantize_model

__all__ = [
    "NO_ADAPTER", "AdapterConfig", "LoRAAdapter", "LoRALinear", "TrainableReport",
    "inject_lora", "set_active_adapters", "active_adapters", "adapter_names", "adapter_config",
    "mixed_batch", "merge_adapter", "unmerge_adapter", "delete_adapter", "mark_trainable",
    "trainable_report", "lora_layers", "default_targets",
    "lora_state_dict", "save_adapter", "load_adapter",
    "save_peft_adapter", "load_peft_adapter", "read_peft_config",
    "NF4Weight", "nf4_levels", "uniform_levels", "dynamic_levels", "quantize_blockwise",
    "quantize_nf4", "dequantize_nf4", "pack_4bit", "unpack_4bit", "fake_quantize",
    "QLoRALinear", "quantize_model", "prepare_qlora", "base_weight_bytes",
]
