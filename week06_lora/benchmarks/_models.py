"""The models the week06 benchmarks measure: the week05 baseline and week01 GPT presets.

``"baseline"`` is the newest ``make baseline`` checkpoint (a week04 Llama-style
model, loaded through week05's ``load_for_eval``); any other name is a week01
``GPTConfig`` preset with random weights (``char-*`` presets get a 256-token
vocabulary). ``default_presets()`` measures the baseline when one exists,
else the char-small GPT, plus the 124M GPT-2 preset.
"""

from __future__ import annotations

import torch

from week01_transformer import GPT, GPTConfig


def baseline_available() -> bool:
    try:
        from week05_eval import find_baseline

        find_baseline()
    except (ImportError, FileNotFoundError, ValueError, RuntimeError):
        return False
    return True


def default_presets() -> str:
    return ("baseline" if baseline_available() else "char-small") + ",gpt2"


def load_model(preset: str) -> torch.nn.Module:
    """A float32 model in train mode with dropout 0 for ``preset``."""
    if preset == "baseline":
        from week05_eval import find_baseline, load_for_eval

        model, _, _ = load_for_eval(find_baseline())
        return model.float()
    overrides = {"vocab_size": 256} if preset.startswith("char") else {}
    return GPT(GPTConfig.preset(preset, dropout=0.0, **overrides))
