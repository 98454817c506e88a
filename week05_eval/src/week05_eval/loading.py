"""Checkpoint in, (model, tokenizer, meta) out: what the report card and later weeks evaluate.

``load_for_eval(path)`` accepts a checkpoint file written by week03's
``Trainer`` (``{"model": state_dict, ...}`` with the model's config in the
meta) or by ``shared.save_model`` (a bare state dict with ``meta["model"]``),
a run folder (its newest ``checkpoints/step_*.safetensors``), or a folder of
checkpoints. It rebuilds the model with ``shared.load_model`` (any week's
class, recorded by import path in the meta), loads the weights strictly, and
finds the
tokenizer: the ``tokenizer=`` argument, else the path recorded in the meta
(``train.extra.tokenizer``), else a ``tokenizer.json`` in the checkpoint's
folder or up to three folders above it.

Every failure says what was wrong and what to do: a missing or corrupt file
(``shared.CheckpointError``), a meta without a model config, weights that do
not fit, no tokenizer anywhere (``FileNotFoundError`` naming the places
searched), a tokenizer with more tokens than the model has rows.

``find_baseline(root)`` is how later weeks find the model ``make baseline``
trained: the newest ``<runs>/week05-baseline-*/baseline.json``.

Left out: loading Hugging Face checkpoints (week04's ``Llama.from_hf`` does
that) and sharded checkpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from shared import load_model, read_meta, runs_root
from shared.checkpoint import CheckpointError

TOKENIZER_FILE = "tokenizer.json"
BASELINE_FILE = "baseline.json"
BASELINE_PREFIX = "week05-baseline"


# --------------------------------------------------------------------------- checkpoint files


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file from a file, a run folder or a checkpoints folder."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    for folder in (path / "checkpoints", path):
        found = sorted(folder.glob("*.safetensors"), key=lambda p: (p.stat().st_mtime, p.name))
        steps = sorted(folder.glob("step_*.safetensors"))
        if steps:
            return steps[-1]
        if found:
            return found[-1]
    raise CheckpointError(f"{path} is a folder without any .safetensors checkpoint (looked in "
                          f"{path} and {path / 'checkpoints'})")


def find_tokenizer(ckpt: Path, meta: dict) -> Path:
    """The tokenizer file that belongs to ``ckpt`` (see the module docstring)."""
    looked = []
    recorded = (meta.get("train", {}).get("extra", {}) or {}).get("tokenizer") or meta.get("tokenizer")
    if recorded:
        p = Path(recorded)
        candidates = [p] if p.is_absolute() else [ckpt.parent / p, Path.cwd() / p]
        for c in candidates:
            looked.append(str(c))
            if c.is_file():
                return c
    folder = ckpt.parent
    for _ in range(4):
        c = folder / TOKENIZER_FILE
        looked.append(str(c))
        if c.is_file():
            return c
        folder = folder.parent
    raise FileNotFoundError(f"no tokenizer found for checkpoint {ckpt}: looked at "
                            f"{', '.join(looked)}. Pass tokenizer=... (--tokenizer PATH), the "
                            "tokenizer.json that week02's BPETokenizer.save wrote for this model")


def load_for_eval(path: str | os.PathLike, tokenizer=None, device: str | torch.device = "cpu"
                  ) -> tuple[torch.nn.Module, object, dict]:
    """``(model in eval mode on device, tokenizer, meta)`` for a checkpoint; see the docstring."""
    from week02_bpe import BPETokenizer
    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt)
    model = load_model(ckpt)
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        tok_path = Path(tokenizer) if tokenizer is not None else find_tokenizer(ckpt, meta)
        if not tok_path.is_file():
            raise FileNotFoundError(f"tokenizer file {tok_path} does not exist")
        tokenizer = BPETokenizer.load(tok_path)
        meta = {**meta, "tokenizer_path": str(tok_path)}
    V = getattr(getattr(model, "config", None), "vocab_size", None)
    if V is not None and tokenizer.vocab_size > V:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model of "
                         f"{ckpt} only {V}: they do not belong together")
    meta = {**meta, "checkpoint": str(ckpt)}
    return model.to(device).eval(), tokenizer, meta


# --------------------------------------------------------------------------- the baseline


def find_baseline(root: str | os.PathLike | None = None) -> Path:
    """The checkpoint of the newest finished ``make baseline`` run under ``root`` (runs/)."""
    root = Path(root) if root is not None else runs_root()
    found = []
    for marker in root.glob(f"{BASELINE_PREFIX}*/{BASELINE_FILE}"):
        try:
            info = json.loads(marker.read_text())
        except (json.JSONDecodeError, OSError):
            continue
        ckpt = Path(info.get("checkpoint", ""))
        if not ckpt.is_absolute():
            ckpt = marker.parent / ckpt
        if ckpt.is_file():
            found.append((marker.stat().st_mtime, marker.parent.name, ckpt))
    if not found:
        raise FileNotFoundError(f"no finished baseline under {root.resolve()}: run `make baseline` "
                                "(about 10 minutes on 2 CPU cores) or "
                                "`python -m week05_eval.baseline --help`")
    return max(found)[2]
