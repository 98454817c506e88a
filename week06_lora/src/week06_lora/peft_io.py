"""Adapters in Hugging Face PEFT's on-disk format, both ways.

A PEFT LoRA adapter is a folder with

- ``adapter_config.json``: ``peft_type: "LORA"``, ``r``, ``lora_alpha``,
  ``target_modules``, ``use_rslora``, ``use_dora``, ``lora_dropout``, ...;
- ``adapter_model.safetensors``: for each adapted module ``M`` of the base
  model, ``base_model.model.M.lora_A.weight`` (r, in),
  ``base_model.model.M.lora_B.weight`` (out, r) and, for DoRA,
  ``base_model.model.M.lora_magnitude_vector`` (out,).

Our A and B are exactly PEFT's ``lora_A.weight`` and ``lora_B.weight``, with
the same scaling, so ``save_peft_adapter`` on a Hugging Face model that went
through ``inject_lora`` gives a folder that ``peft.PeftModel.from_pretrained``
loads with the same logits, and ``load_peft_adapter`` reads PEFT's folders back.

Left out: ``rank_pattern`` / ``alpha_pattern`` (per-layer ranks),
``modules_to_save``, bias training, ``fan_in_fan_out`` layers (GPT-2's
Conv1D) and PEFT's other tuner types.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file

from shared import CheckpointError, save_checkpoint
from week06_lora.lora import (
    LoRALinear,
    _layers_with,
    adapter_config,
    inject_lora,
    lora_layers,
    mark_trainable,
    set_active_adapters,
)

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."

# ---------------------------------------------------------------- save


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_peft_adapter(folder: str | os.PathLike, model: nn.Module, adapter: str = "default",
                      base_model_name_or_path: str | None = None,
                      task_type: str | None = "CAUSAL_LM") -> Path:
    """Write adapter ``adapter`` of ``model`` as a PEFT LoRA folder; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = adapter_config(model, adapter)
    layers = _layers_with(model, adapter)
    tensors = {}
    for name, layer in layers.items():
        ad = layer.lora[adapter]
        tensors[f"{PREFIX}{name}.lora_A.weight"] = ad.A.detach().contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = ad.B.detach().contiguous()
        if ad.magnitude is not None:
            tensors[f"{PREFIX}{name}.lora_magnitude_vector"] = ad.magnitude.detach().contiguous()
    config = {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model_name_or_path,
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "use_rslora": cfg.rslora,
        "use_dora": cfg.dora,
        "target_modules": sorted(layers),  # full module names: PEFT matches them exactly
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    # safetensors body, atomically (shared's writer; PEFT ignores the extra header metadata)
    save_checkpoint(folder / WEIGHTS_FILE, tensors, meta={"adapter": adapter, "source": "week06_lora"})
    _write_json_atomic(folder / CONFIG_FILE, config)
    return folder


# ---------------------------------------------------------------- load


def read_peft_config(folder: str | os.PathLike) -> dict:
    """``adapter_config.json`` of a PEFT folder, checked for what we support."""
    path = Path(folder) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{folder} is not a PEFT adapter folder: {CONFIG_FILE} is missing")
    cfg = json.loads(path.read_text())
    if cfg.get("peft_type") != "LORA":
        raise CheckpointError(f"{path}: peft_type {cfg.get('peft_type')!r} is not supported; only 'LORA'")
    for key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(key):
            raise CheckpointError(f"{path}: {key} (per-layer ranks) is not supported")
    if cfg.get("fan_in_fan_out"):
        raise CheckpointError(f"{path}: fan_in_fan_out (Conv1D layers) is not supported")
    if cfg.get("bias", "none") != "none":
        raise CheckpointError(f"{path}: bias={cfg['bias']!r} is not supported; only 'none'")
    if cfg.get("modules_to_save"):
        raise CheckpointError(f"{path}: modules_to_save={cfg['modules_to_save']} is not supported")
    return cfg


def load_peft_adapter(folder: str | os.PathLike, model: nn.Module, adapter: str = "default",
                      activate: bool = True, freeze_base: bool = True) -> str:
    """Load a PEFT LoRA folder into ``model`` (a plain Hugging Face model) as ``adapter``."""
    folder = Path(folder)
    cfg = read_peft_config(folder)
    wpath = folder / WEIGHTS_FILE
    if not wpath.exists():
        raise CheckpointError(f"{folder}: {WEIGHTS_FILE} is missing")
    state = load_file(str(wpath))
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in state.items():
        if not key.startswith(PREFIX):
            raise CheckpointError(f"{wpath}: unexpected key {key!r} (expected the {PREFIX!r} prefix)")
        body = key[len(PREFIX):]
        for suffix, slot in ((".lora_A.weight", "A"), (".lora_B.weight", "B"),
                             (".lora_magnitude_vector", "magnitude")):
            if body.endswith(suffix):
                groups.setdefault(body[: -len(suffix)], {})[slot] = t
                break
        else:
            raise CheckpointError(f"{wpath}: unsupported tensor {key!r}")
    modules = dict(model.named_modules())
    r, use_dora = int(cfg["r"]), bool(cfg.get("use_dora", False))
    problems = []
    for name, g in groups.items():
        m = modules.get(name)
        if not isinstance(m, (nn.Linear, LoRALinear)):
            problems.append(f"{name}: not a linear layer of {type(model).__name__}")
            continue
        want = {"A": (r, m.in_features), "B": (m.out_features, r)}
        if use_dora:
            want["magnitude"] = (m.out_features,)
        for slot, shape in want.items():
            got = tuple(g[slot].shape) if slot in g else None
            if got != shape:
                problems.append(f"{name}.{slot}: file {got} vs expected {shape} (r={r})")
    if problems:
        raise CheckpointError(f"PEFT adapter {folder} does not fit this model: " + "; ".join(problems[:4]))
    inject_lora(model, targets=[f"^{n.replace('.', '[.]')}$" for n in groups], r=r,
                alpha=float(cfg["lora_alpha"]), adapter=adapter,
                dropout=float(cfg.get("lora_dropout", 0.0)), rslora=bool(cfg.get("use_rslora")),
                dora=use_dora, freeze_base=False, activate=False)
    layers = lora_layers(model)
    with torch.no_grad():
        for name, g in groups.items():
            ad = layers[name].lora[adapter]
            ad.A.copy_(g["A"])
            ad.B.copy_(g["B"])
            if use_dora:
                ad.magnitude.copy_(g["magnitude"])
    if activate:
        set_active_adapters(model, [adapter])
    if freeze_base:
        mark_trainable(model, [adapter])
    return adapter
