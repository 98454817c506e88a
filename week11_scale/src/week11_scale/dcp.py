"""Sharded training checkpoints with PyTorch Distributed Checkpoint (DCP), resharded on load.

One checkpoint is a folder ``<ckpt_dir>/step_0000010/``:

- ``.metadata`` + ``__<rank>_0.distcp``: the model and optimizer state of
  ``torch.distributed.checkpoint.state_dict.get_state_dict(model, optimizer)``,
  keyed by parameter name (FQN). Each rank writes only its own shards (an FSDP2
  DTensor's local piece; a plain or DDP-wrapped tensor once), and ``.metadata``
  records every tensor's global shape, so a load at another world size or
  placement (2 ranks -> 1 process, 1 -> FSDP2 on 2) reads just the pieces it needs;
- ``trainer.safetensors`` (rank 0, ``shared.save_checkpoint``): ``extra``, the
  rest of a week03 training state (scheduler, loader, hooks, step, history);
  its meta is the caller's plus ``{"kind": "week11-dcp", "world_size", "step"}``;
- ``rng_<rank>.safetensors``: each rank's RNG states (week03 ``rng_state()``).

Writes are atomic: everything goes into ``.step_0000010.partial``, then rank 0
fsyncs it and ``os.replace``s it to its name. A folder counts only when it is
complete (its name, ``.metadata`` and ``trainer.safetensors``); partial folders
are removed at the next save, and only the last ``keep_last`` are kept.
``NANOCHAT_KILL_IN_SAVE=<step>`` is a test hook: every rank SIGKILLs itself
after writing that step's files, before the rename.

Every function is collective when a process group is initialised (all ranks
call it) and also works in one plain process. ``sharded_to_single`` and
``single_to_sharded`` convert from and to week03's single-file checkpoint
(``Trainer.resume``, ``shared.load_model``) in one process.

RNG on a load at another world size: rank ``r`` restores ``rng_<r>`` when the
checkpoint has it and leaves its RNG alone otherwise. Loading drops the
gradients of the optimizer's parameters (DCP builds the optimizer state to load
into with a zero-gradient, zero-lr step); a load refused for a mismatch changes
nothing, one that fails while reading files may leave the model half-loaded.

Left out: asynchronous saves (``dcp.async_save``), storage other than one
filesystem that every rank sees (single node or a shared mount), and
conversion of runs whose optimizer had custom ``params=`` groups (the meta
records the ``TrainConfig``, which rebuilds only the default groups).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import warnings
from collections import defaultdict
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from shared import load_checkpoint, save_checkpoint
from shared.checkpoint import CheckpointError, build_model, read_meta
from shared.checkpoint import fsync_path as _fsync
from week03_training import TrainConfig, build_optimizer
from week03_training.runstate import rng_state, set_rng_state

__all__ = ["CKPT_KIND", "KILL_HOOK_ENV", "save_sharded", "load_sharded", "latest_sharded",
           "sharded_to_single", "single_to_sharded"]

CKPT_KIND = "week11-dcp"
SINGLE_KIND = "week03-train"          # week03's Trainer checkpoints
KILL_HOOK_ENV = "NANOCHAT_KILL_IN_SAVE"
TRAINER_FILE = "trainer.safetensors"
_STEP_DIR = re.compile(r"step_(\d+)")
_NOT_EXTRA = ("model", "optimizer", "rng")     # the parts of a week03 state DCP / rng files hold

# ----------------------------------------------------------------------------- process group


def _distributed(local: bool) -> bool:
    return not local and dist.is_available() and dist.is_initialized()


def _rank(local: bool) -> int:
    return dist.get_rank() if _distributed(local) else 0


def _barrier(local: bool) -> None:
    if _distributed(local):
        dist.barrier()


def _dcp(fn, state: dict, path: Path, local: bool) -> None:
    """``dcp.save`` / ``dcp.load``, without DCP's "single process" warning when that is meant."""
    no_dist = not _distributed(local)
    with warnings.catch_warnings():
        if no_dist:
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        fn(state, checkpoint_id=path, no_dist=no_dist)


def _any_rank(flag: bool, local: bool) -> bool:
    """``flag`` OR-ed over the ranks (each rank may see a different optimizer state)."""
    if not _distributed(local):
        return flag
    t = torch.tensor([int(flag)])
    if dist.get_backend() == "nccl":
        t = t.cuda(torch.cuda.current_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# ----------------------------------------------------------------------------- folders


def _is_complete(folder: Path) -> bool:
    return (_STEP_DIR.fullmatch(folder.name) is not None and folder.is_dir()
            and (folder / ".metadata").is_file() and (folder / TRAINER_FILE).is_file())


def _complete(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Every complete checkpoint folder in ``ckpt_dir`` as (step, path), oldest first."""
    if not ckpt_dir.is_dir():
        return []
    return sorted((int(p.name.split("_")[1]), p) for p in ckpt_dir.iterdir() if _is_complete(p))


def latest_sharded(ckpt_dir: str | os.PathLike) -> Path | None:
    """The highest-step complete checkpoint folder in ``ckpt_dir`` (partial ones ignored)."""
    found = _complete(Path(ckpt_dir))
    return found[-1][1] if found else None


def _check_folder(path: Path) -> dict:
    """The trainer meta of checkpoint folder ``path``; CheckpointError if it is not one."""
    if not path.exists():
        raise CheckpointError(f"sharded checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file; a week11 sharded checkpoint is a folder "
                              "step_NNNNNNN/ (a week03 file converts with single_to_sharded)")
    if not _STEP_DIR.fullmatch(path.name):
        inner = latest_sharded(path)
        hint = (f"; it holds checkpoints, the latest is {inner} (latest_sharded)" if inner
                else "; valid: a folder named step_NNNNNNN written by save_sharded")
        if path.name.endswith(".partial"):
            hint = "; it is a partial save (the writer died before renaming it)"
        raise CheckpointError(f"{path} is not a sharded checkpoint folder{hint}")
    missing = [n for n in (".metadata", TRAINER_FILE) if not (path / n).is_file()]
    if missing:
        raise CheckpointError(f"sharded checkpoint {path} is incomplete: {', '.join(missing)} "
                              "missing (an interrupted or foreign write); use "
                              "latest_sharded(folder) for the newest complete one")
    meta = read_meta(path / TRAINER_FILE)
    if meta.get("kind") != CKPT_KIND:
        raise CheckpointError(f"{path / TRAINER_FILE} has kind {meta.get('kind')!r}, expected "
                              f"{CKPT_KIND!r}: not written by week11's save_sharded")
    return meta


def _remove_partials(ckpt_dir: Path) -> None:
    """Rank 0: delete the folders of interrupted saves (and of replaced checkpoints)."""
    for p in ckpt_dir.glob(".step_*"):
        if p.is_dir() and (p.name.endswith(".partial") or p.name.endswith(".old")):
            shutil.rmtree(p, ignore_errors=True)


def _prune(ckpt_dir: Path, keep_last: int) -> None:
    """Rank 0: delete all but the last ``keep_last`` complete checkpoints."""
    for _, p in _complete(ckpt_dir)[:-keep_last]:
        shutil.rmtree(p, ignore_errors=True)


# ----------------------------------------------------------------------------- state


def _state(model: torch.nn.Module, optimizer, with_optimizer: bool) -> dict:
    """``{"model": ...}`` (+ ``"optimizer"``) by FQN, DTensor shards under FSDP2."""
    if not with_optimizer:
        return {"model": get_model_state_dict(model)}
    msd, osd = get_state_dict(model, optimizer)
    return {"model": msd, "optimizer": osd}


def _tensors(tree, prefix: str = "") -> dict[str, tuple]:
    """The dotted keys DCP gives the tensors of a nested state dict -> global shapes."""
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(tree, torch.Tensor):
        out[prefix] = tuple(tree.shape)     # a DTensor's shape is the global one
    return out


def _fit(path: Path, target: dict, saved: dict[str, tuple]) -> None:
    """Check ``target`` against the checkpoint's tensors; drop optimizer entries it lacks.

    Model keys must match both ways. Optimizer states in the checkpoint must all
    exist here; a parameter with no state in the checkpoint (it had no gradient
    then) gets none here either.
    """
    if "optimizer" in target:
        state = target["optimizer"]["state"]
        for fqn in [f for f in state if not any(k.startswith(f"optimizer.state.{f}.")
                                                 for k in saved)]:
            del state[fqn]
    want = _tensors(target)
    got = {k: v for k, v in saved.items() if k.split(".")[0] in target}
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    shapes = [f"{k}: checkpoint {got[k]} vs here {want[k]}" for k in want
              if k in got and got[k] != want[k]]
    problems = [f"{name} {keys[:4]}{' ...' if len(keys) > 4 else ''}" for name, keys in
                (("missing from the checkpoint:", missing),
                 ("in the checkpoint, not here:", unexpected), ("shape mismatch:", shapes)) if keys]
    if problems:
        raise CheckpointError(f"sharded checkpoint {path} does not fit this model/optimizer "
                              "(another config or optimizer?): " + "; ".join(problems))


# ----------------------------------------------------------------------------- save / load


def save_sharded(ckpt_dir: str | os.PathLike, *, model: torch.nn.Module, optimizer, step: int,
                 extra: dict, meta: dict, keep_last: int = 3) -> Path:
    """Write ``ckpt_dir/step_<step>/`` atomically (collective); returns the folder.

    ``model`` may be plain, DDP-wrapped or FSDP2-sharded; ``optimizer=None`` saves the
    model alone (and ``load_sharded(optimizer=None)`` loads it alone); ``extra`` is the rest
    of the training state (rank 0's is saved); ``meta`` is JSON-able (week03's
    ``{"train": ..., "model": ...}`` so ``sharded_to_single`` can rebuild the run).
    """
    return _save(ckpt_dir, model, optimizer, step, extra, meta, keep_last)


def _save(ckpt_dir, model, optimizer, step, extra, meta, keep_last, rng=None,
          local: bool = False) -> Path:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
        raise ValueError(f"keep_last must be an int >= 1, got {keep_last!r}")
    if not isinstance(extra, dict) or not isinstance(meta, dict):
        raise TypeError(f"extra and meta must be dicts, got {type(extra).__name__} and "
                        f"{type(meta).__name__}")
    clash = [k for k in _NOT_EXTRA if k in extra]
    if clash:
        raise ValueError(f"extra holds {clash}: the model and optimizer go to DCP and the RNG "
                         "to rng_<rank> files; pass the rest of the state only")
    kill = os.environ.get(KILL_HOOK_ENV, "")
    if kill and not kill.lstrip("-").isdigit():
        raise ValueError(f"{KILL_HOOK_ENV}={kill!r}: expected a step number")
    rng = rng if rng is not None else rng_state()
    ckpt_dir, rank = Path(ckpt_dir), _rank(local)
    final = ckpt_dir / f"step_{step:07d}"
    tmp = ckpt_dir / f".{final.name}.partial"
    world = dist.get_world_size() if _distributed(local) else 1
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        _remove_partials(ckpt_dir)
        tmp.mkdir()
    _barrier(local)

    # an empty optimizer state (no step yet) stays empty: get_state_dict would initialise it
    # optimizer=None: the model alone (ZeRO-1 keeps its consolidated state in ``extra``)
    has_optim = optimizer is not None and _any_rank(bool(optimizer.state), local)
    state = _state(model, optimizer, has_optim)
    _dcp(dcp.save, state, tmp, local)
    save_checkpoint(tmp / f"rng_{rank}.safetensors", rng, {"kind": f"{CKPT_KIND}-rng",
                                                          "rank": rank, "step": step})
    if rank == 0:
        save_checkpoint(tmp / TRAINER_FILE, extra,
                        {**meta, "kind": CKPT_KIND, "world_size": world, "step": step,
                         "optimizer_state": has_optim})
    if kill and int(kill) == step:           # test hook: die like a crash, before the rename
        os.kill(os.getpid(), signal.SIGKILL)
    _barrier(local)

    if rank == 0:
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        old = ckpt_dir / f".{final.name}.old"
        if final.exists():                   # a second save of the same step replaces it
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync(ckpt_dir)
        _remove_partials(ckpt_dir)           # the replaced one, if any
        _prune(ckpt_dir, keep_last)
    _barrier(local)
    return final


def load_sharded(path: str | os.PathLike, *, model: torch.nn.Module, optimizer
                 ) -> tuple[dict, dict]:
    """Load checkpoint folder ``path`` into ``model`` and ``optimizer`` in place (collective).

    Resharded to this run's world size and placements; restores this rank's
    RNG when the checkpoint has a file for it. Returns ``(extra, meta)``.
    Raises ``CheckpointError`` for a missing, incomplete or foreign folder or a
    model/optimizer whose parameter names or shapes differ.
    """
    return _load(Path(path), model, optimizer)


def _load(path: Path, model, optimizer, restore_rng: bool = True, local: bool = False
          ) -> tuple[dict, dict]:
    meta = _check_folder(path)
    extra, _ = load_checkpoint(path / TRAINER_FILE, map_location="cpu")
    saved = {k: tuple(m.size) for k, m in
             dcp.FileSystemReader(path).read_metadata().state_dict_metadata.items()
             if isinstance(m, TensorStorageMetadata)}
    # DCP fills the state it is given: start from none, so get_state_dict builds all of it
    # with a zero-lr step (which it skips when any gradient exists); a refused load puts the
    # old state back
    with_optim = optimizer is not None and bool(meta.get("optimizer_state", True))
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
        before, optimizer.state = optimizer.state, defaultdict(dict)
    try:
        target = _state(model, optimizer, with_optim)
        _fit(path, target, saved)
    except CheckpointError:
        if optimizer is not None:
            optimizer.state = before
        raise
    try:
        _dcp(dcp.load, target, path, local)
    except Exception as e:   # DCP wraps per-rank failures in CheckpointException
        raise CheckpointError(f"sharded checkpoint {path} could not be loaded: {e}") from e
    if with_optim:
        # strict=False: _fit checked the model keys; a parameter without saved state stays so
        set_state_dict(model, optimizer, model_state_dict=target["model"],
                       optim_state_dict=target["optimizer"],
                       options=StateDictOptions(strict=False))
    else:                                    # saved before the first step: no moments yet
        set_model_state_dict(model, target["model"])
    rng_file = path / f"rng_{_rank(local)}.safetensors"
    if restore_rng and rng_file.is_file():
        set_rng_state(load_checkpoint(rng_file)[0])
    return extra, meta


# ----------------------------------------------------------------------------- conversion


def sharded_to_single(path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """A week03 single-file checkpoint (kind "week03-train", rank 0's RNG) of folder ``path``.

    Runs in this process alone (no collective): the model is rebuilt from
    ``meta["model"]`` and the optimizer with ``build_optimizer(model,
    TrainConfig.from_dict(meta["train"]))``, so only the default param groups
    are supported. ``Trainer.resume`` and ``shared.load_model`` read the result.
    """
    path = Path(path)
    meta = _check_folder(path)
    for key in ("model", "train"):
        if key not in meta:
            raise CheckpointError(f"sharded checkpoint {path} has no meta[{key!r}]: save it with "
                                  "week03's {'train': cfg.to_dict(), 'model': describe_model(m)}")
    model = build_model(meta["model"], source=f"sharded checkpoint {path}")
    optimizer = build_optimizer(model, TrainConfig.from_dict(meta["train"]))
    extra, meta = _load(path, model, optimizer, restore_rng=False, local=True)
    rng_file = path / "rng_0.safetensors"
    if not rng_file.is_file():
        raise CheckpointError(f"sharded checkpoint {path} has no rng_0.safetensors")
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **extra,
             "rng": load_checkpoint(rng_file)[0]}
    state.setdefault("step", meta["step"])
    single = {k: v for k, v in meta.items() if k not in ("world_size", "optimizer_state")}
    return save_checkpoint(out_path, state, {**single, "kind": SINGLE_KIND})


def single_to_sharded(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """A week03 checkpoint file -> ``out_dir/step_<step>/`` (this process alone writes it);
    ``load_sharded`` reads it at any world size, e.g. into FSDP2 on 2 ranks."""
    state, meta = load_checkpoint(path, map_location="cpu", expect={"kind": SINGLE_KIND})
    model = build_model(meta.get("model"), source=f"checkpoint {path}")
    model.load_state_dict(state["model"])
    optimizer = build_optimizer(model, TrainConfig.from_dict(meta.get("train", {})))
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: its optimizer state does not fit the default "
                              f"param groups of its TrainConfig (custom params=?): {e}") from None
    extra = {k: v for k, v in state.items() if k not in _NOT_EXTRA}
    run_meta = {k: v for k, v in meta.items() if k not in ("kind", "step")}
    return _save(out_dir, model, optimizer, int(state["step"]), extra, run_meta,
                 keep_last=1 << 30, rng=state["rng"], local=True)
