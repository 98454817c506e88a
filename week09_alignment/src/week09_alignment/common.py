"""What the three commands share: the starting model, one stage run, the stage's files.

- ``load_start(which)``: ``(model, tokenizer, description)`` for ``auto`` (the
  week05 baseline when one exists, else week07's tiny base), ``baseline``,
  ``tiny``, a stage folder written by ``save_stage`` or a checkpoint path
  (``week07_continual``'s ``load_base``, which reads week03/week05 checkpoints);
- ``run_stage(...)``: week03's ``Trainer`` over a loader and a ``loss_fn``,
  its checkpoints in ``<out>/train/checkpoints`` (resumed when one is there,
  so a killed run continues where it stopped), metrics in
  ``<out>/train/metrics.jsonl`` (the dashboard reads them), then the trained
  model saved by ``save_stage``;
- ``save_stage(out, model, tokenizer, meta)``: ``<out>/model.safetensors``
  (``shared.save_model``: the next stage, week05's report card and
  ``shared.load_model`` rebuild it) and ``<out>/tokenizer.json``, written
  atomically, plus ``<out>/stage.json`` (what the stage did, its metrics).

Left out: multi-GPU launch (week11).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared import save_model
from week03_training import TrainConfig, Trainer

MODEL_FILE = "model.safetensors"
STAGE_FILE = "stage.json"


def load_start(which: str | os.PathLike = "auto", progress: bool = True):
    """``(model in train mode, tokenizer, description)``; see the module docstring."""
    from week07_continual.models import load_base

    path = Path(which)
    if path.is_dir() and (path / MODEL_FILE).is_file():
        path = path / MODEL_FILE
    return load_base(str(path) if path.exists() else str(which), progress=progress)


def write_json(path: str | os.PathLike, obj) -> Path:
    """``obj`` as indented JSON at ``path``, atomically (a temp file, then a rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)
    return path


def update_stage(out: str | os.PathLike, **entries) -> dict:
    """Merge ``entries`` into ``<out>/stage.json`` (atomically); returns the new contents."""
    meta = {**read_stage(out), **entries}
    write_json(Path(out) / STAGE_FILE, meta)
    return meta


def save_stage(out: str | os.PathLike, model, tokenizer, meta: dict | None = None) -> Path:
    """Save the model, its tokenizer and ``stage.json`` into ``out``; returns the model path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out / "tokenizer.json")  # week02's save is atomic (temp file, rename)
    meta = dict(meta or {})
    path = save_model(out / MODEL_FILE, model, {"tokenizer": "tokenizer.json", **meta})
    write_json(out / STAGE_FILE, meta)
    return path


def read_stage(out: str | os.PathLike) -> dict:
    """The ``stage.json`` a stage wrote (``{}`` when there is none)."""
    p = Path(out) / STAGE_FILE
    return json.loads(p.read_text()) if p.is_file() else {}


def run_stage(model, tokenizer, loader, cfg: TrainConfig, out: str | os.PathLike, *,
              loss_fn=None, hooks=(), params=None, val_loader=None, desc: str = "train",
              meta: dict | None = None, resume: bool = True) -> tuple[Path, Trainer]:
    """Train through week03's Trainer into ``<out>/train`` (resuming its latest checkpoint
    when ``resume``), then ``save_stage``; returns (model path, trainer). ``val_loader``:
    held-out batches the Trainer scores with the same loss_fn every ``cfg.eval_every``."""
    out = Path(out)
    trainer = Trainer(model, loader, cfg, loss_fn=loss_fn, hooks=hooks, params=params,
                      val_loader=val_loader, run_dir=out / "train", desc=desc)
    if resume and trainer.latest() is not None:
        step = trainer.resume()
        print(f"[{desc}] resumed from step {step} ({trainer.latest()})", flush=True)
    trainer.fit()
    model.eval()
    info = {"steps": trainer.step, "final_loss": trainer.history[-1] if trainer.history else None}
    path = save_stage(out, model, tokenizer, {**(meta or {}), desc: info})
    return path, trainer
