"""Week 03 exercises, exact resume: ``Trainer.resume``, continuing a run bit for bit, and
``Trainer.state_dict``, what a checkpoint must hold for that (both stretch).

Fill in ``resume`` and ``state_dict`` below, then run ``make week03-exercises``. ``resume``
replaces the method ``week03_training.Trainer.resume`` while its tests run (the package's
``state_dict`` writes the checkpoints it reads); ``state_dict`` replaces
``Trainer.state_dict`` while its own tests run (the package's ``resume`` reads back what it
saved). ``resume``'s tests: train 10 steps straight; train 6, rebuild everything from
scratch (another model seed, another loader seed, the global RNG scrambled), resume, train
4 more; the loss history and every weight must be *equal* (``torch.equal``, not close),
with dropout on, under AdamW + cosine, Muon + WSD, and bf16 with gradient accumulation, and
with an EMA hook whose state must come back too. Other tests resume past a checkpoint write
killed half way, and feed it corrupt and mismatched files, which must raise
``CheckpointError`` with the messages below.

What a checkpoint holds: ``Trainer.save_checkpoint`` wrote ``Trainer.state_dict()``,
``{"model", "optimizer", "scheduler", "train_loader", "hooks", "rng", "step", "history"}``,
with the metadata ``{"kind": "week03-train", "step", "train": cfg.to_dict(), "model":
describe_model(model)}``. ``self`` is a Trainer built as usual (``raw_model``, ``optimizer``,
``scheduler``, ``train_loader``, ``hooks``, ``cfg``, ``run_dir``, ``ckpt_dir``, ``latest()``).
The imports below are the helpers you need; RNG restore is yours to write.
"""

import random  # noqa: F401
from pathlib import Path  # noqa: F401

import numpy as np  # noqa: F401
import torch  # noqa: F401

from shared import load_checkpoint  # noqa: F401
from shared.checkpoint import CheckpointError, check_state_dict  # noqa: F401
from shared.metrics import truncate_metrics  # noqa: F401
from week03_training.config import RESUMABLE_CHANGES  # noqa: F401
from week03_training.runstate import comparable, describe_model, rng_state  # noqa: F401
from week03_training.trainer import CKPT_KIND  # noqa: F401


def resume(self, path=None) -> int:
    """Load checkpoint ``path`` (``self.latest()`` when None) into this Trainer; return its step.

    1. No path and no checkpoint: ``CheckpointError("no checkpoint to resume from in ...")``.
       ``load_checkpoint(path, map_location="cpu", expect={"kind": CKPT_KIND})`` gives
       ``(state, meta)`` and already raises on truncated, corrupt or foreign files.
    2. Refuse what would not continue the *same* run, each a ``CheckpointError`` naming the
       file and the differing keys:
       - another model: ``comparable(meta["model"])`` != ``comparable(describe_model(
         self.raw_model))``: "... was written for another model: ... differ in {key: (...)}";
       - other settings: any key of ``self.cfg.to_dict()`` outside ``RESUMABLE_CHANGES`` (the
         run length, logging, device...) that differs from ``meta["train"]``: "... was trained
         with other settings ... {'lr': (old, new)}" (a dict of the differing keys);
       - the hooks with ``state_dict``/``load_state_dict`` are not as many as
         ``state["hooks"]``: "... holds 1 hook state(s) ..." (the number saved);
       - ``check_state_dict(self.raw_model, state["model"], source=...)`` for the weights.
    3. Restore everything the next step reads: ``raw_model``, ``optimizer`` (Adam's moments
       and step counts), ``scheduler`` (where in the lr schedule), ``train_loader`` (where in
       the data), each stateful hook in order (``load_state_dict`` on each).
    4. The random streams, as ``runstate.rng_state()`` saved them in ``state["rng"]``:
       ``"torch"`` (a uint8 tensor: ``torch.set_rng_state``; dropout draws from it),
       ``"numpy"`` (``np.random.set_state``), ``"python"`` (``(version, internal, gauss)``;
       ``random.setstate`` wants ``internal`` as a tuple) and, when saved and CUDA is there,
       ``"cuda"`` (``torch.cuda.set_rng_state_all``). Skip this and the resumed run draws
       other dropout masks: close, never equal.
    5. ``self.step = int(state["step"])``, ``self.history`` = the saved losses as a list of
       floats (``state["history"]`` is a float64 tensor), ``truncate_metrics(self.run_dir,
       step)`` (the resumed run logs the later steps again), and return the step.
    """
    raise NotImplementedError("not implemented yet: Trainer.resume (check the checkpoint fits, "
                              "then restore model, optimizer, scheduler, loader, hooks, RNG "
                              "states, step and history)")


def state_dict(self) -> dict:
    """Everything ``resume`` needs to continue this run bit for bit, as one dict.

    ``Trainer.save_checkpoint`` writes what this returns (``shared.save_checkpoint`` stores
    the tensors, nested in dicts and lists, in a safetensors file and the rest as JSON), and
    ``resume`` reads back exactly these eight keys:

    - ``"model"``: the weights, ``self.raw_model.state_dict()`` (``raw_model``: not the
      ``torch.compile`` wrapper, whose keys carry a prefix);
    - ``"optimizer"``: ``self.optimizer.state_dict()`` (Adam's moments and step counts);
    - ``"scheduler"``: ``self.scheduler.state_dict()`` (where in the lr schedule);
    - ``"train_loader"``: ``self.train_loader.state_dict()`` (where in the data: without
      it the resumed run sees the first batches again);
    - ``"hooks"``: ``[h.state_dict() for h in hooks]`` for the hooks of ``self.hooks`` that
      have both ``state_dict`` and ``load_state_dict``, in order (an EMA's shadow weights);
      plain function hooks have no state and are skipped;
    - ``"rng"``: the random streams now, ``rng_state()`` (imported above: torch, NumPy,
      Python and, when there is one, CUDA). Without it the resumed run draws other dropout
      masks: close to the uninterrupted run, never equal;
    - ``"step"``: ``self.step``, an int;
    - ``"history"``: the training losses so far, ``torch.tensor(self.history,
      dtype=torch.float64)`` (float64, so every Python float comes back exactly).

    The tests save half way through a run with dropout on, a loss that also draws from
    NumPy's and Python's RNGs, two micro-batches per step and a stateful hook, resume in a
    Trainer rebuilt with other seeds, and want the uninterrupted run's losses and weights
    exactly.
    """
    raise NotImplementedError("not implemented yet: Trainer.state_dict (model, optimizer, "
                              "scheduler, loader position, hook states, RNG states, step and "
                              "history, for resume)")
