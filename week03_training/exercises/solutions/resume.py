"""Worked solutions: ``Trainer.resume``, continuing a run bit-exactly, and
``Trainer.state_dict``, what it reads (week03 exercises)."""

import random
from pathlib import Path

import numpy as np
import torch

from shared import load_checkpoint
from shared.checkpoint import CheckpointError, check_state_dict
from shared.metrics import truncate_metrics
from week03_training.config import RESUMABLE_CHANGES
from week03_training.runstate import comparable, describe_model, rng_state
from week03_training.trainer import CKPT_KIND


def resume(self, path=None) -> int:
    """Check the checkpoint fits this Trainer, restore every piece of run state, return its step."""
    path = Path(path) if path is not None else self.latest()
    if path is None:
        raise CheckpointError(f"no checkpoint to resume from in {self.ckpt_dir}")
    state, meta = load_checkpoint(path, map_location="cpu", expect={"kind": CKPT_KIND})

    # 1. the same model and the same training settings, else it is not the same run
    theirs, mine = comparable(meta.get("model", {})), comparable(describe_model(self.raw_model))
    diff = {k: (theirs.get(k), mine.get(k)) for k in sorted(set(theirs) | set(mine))
            if theirs.get(k) != mine.get(k)}
    if diff:
        raise CheckpointError(f"checkpoint {path} was written for another model: "
                              f"(checkpoint, this model) differ in {diff}")
    old_cfg = meta.get("train", {})
    diff = {k: (old_cfg.get(k), v) for k, v in self.cfg.to_dict().items()
            if k not in RESUMABLE_CHANGES and old_cfg.get(k) != v}
    if diff:
        raise CheckpointError(f"checkpoint {path} was trained with other settings; resuming "
                              f"would not continue the same run. (checkpoint, now): {diff}")
    hooks = [h for h in self.hooks if hasattr(h, "state_dict") and hasattr(h, "load_state_dict")]
    hook_states = list(state.get("hooks", []))
    if len(hooks) != len(hook_states):
        raise CheckpointError(f"checkpoint {path} holds {len(hook_states)} hook state(s); "
                              f"this Trainer has {len(hooks)} hook(s) with a state_dict")
    check_state_dict(self.raw_model, state["model"], source=f"checkpoint {path}")

    # 2. everything the next step reads: weights, moments, lr position, data position, hooks
    self.raw_model.load_state_dict(state["model"])
    try:
        self.optimizer.load_state_dict(state["optimizer"])
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: its optimizer state does not fit this "
                              f"Trainer's parameters (another params=?): {e}") from None
    self.scheduler.load_state_dict(state["scheduler"])
    self.train_loader.load_state_dict(state["train_loader"])
    for hook, s in zip(hooks, hook_states):
        hook.load_state_dict(s)

    # 3. the random streams (dropout masks, anything sampled), as runstate.rng_state saved them
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(rng["cuda"]))

    # 4. the counters, and the metrics log cut back to the checkpoint's step
    self.step = int(state["step"])
    self.history = state["history"].tolist()
    truncate_metrics(self.run_dir, self.step)
    return self.step


def state_dict(self) -> dict:
    """Model, optimizer, scheduler, loader position, stateful hooks, RNG states, step, history."""
    hooks = [h for h in self.hooks if hasattr(h, "state_dict") and hasattr(h, "load_state_dict")]
    return {
        "model": self.raw_model.state_dict(),
        "optimizer": self.optimizer.state_dict(),
        "scheduler": self.scheduler.state_dict(),
        "train_loader": self.train_loader.state_dict(),
        "hooks": [h.state_dict() for h in hooks],
        "rng": rng_state(),
        "step": self.step,
        "history": torch.tensor(self.history, dtype=torch.float64),
    }
