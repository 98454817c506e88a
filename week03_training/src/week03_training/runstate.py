"""What a week03 checkpoint records besides tensors, and how the newest one is found.

- ``latest_checkpoint(folder)``: the highest-step ``step_*.safetensors``;
- the torch / NumPy / Python (and CUDA) RNG states, saved and restored, so a
  resumed run draws the same dropout masks and data as an uninterrupted one;
- ``describe_model``: ``shared.model_spec(model)`` (import paths and config,
  which ``shared.load_model`` rebuilds from), or only the class and size for
  a model without a ``config``; ``comparable`` flattens either form (and the
  older "bare class name" one) for the resume check's diff.

Left out: the file format itself (``shared.checkpoint``).
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from shared.checkpoint import CheckpointError, model_spec

__all__ = ["latest_checkpoint", "rng_state", "set_rng_state", "describe_model", "comparable",
           "step_of"]


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The highest-step ``step_*.safetensors`` in ``folder`` (temp files ignored), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.safetensors")
             if (m := re.fullmatch(r"step_(\d+)\.safetensors", p.name))]
    return max(found)[1] if found else None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def describe_model(model: torch.nn.Module) -> dict:
    """``shared.model_spec(model)`` (import paths + config), or, for a model without a
    ``config``, its class and size (trainable and resumable, not rebuildable by name)."""
    try:
        spec = model_spec(model)
    except CheckpointError:
        cls = type(model)
        spec = {"class": f"{cls.__module__}:{cls.__qualname__}",
                "n_params": sum(p.numel() for p in model.parameters())}
    return json.loads(json.dumps(spec, default=str))   # as the checkpoint's JSON will hold it


def comparable(spec: dict) -> dict:
    """A model description flattened to its config fields, class and size, for diffs;
    reads the older form (a bare class name beside the config fields) too."""
    if "config" in spec:
        flat = dict(spec["config"])
    else:
        flat = {k: v for k, v in spec.items() if k not in ("class", "config_class", "n_params")}
    return {**flat, "class": spec.get("class"), "n_params": spec.get("n_params")}


def step_of(path: Path) -> int:
    """The step number in a ``step_0000123.safetensors`` name."""
    return int(path.stem.split("_")[1])
