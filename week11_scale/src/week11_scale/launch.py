"""Joining a ``torchrun`` launch: who am I, which device, which backend; small collectives.

``torchrun`` (``python -m torch.distributed.run``) starts one process per
device and tells each its place through the environment: ``RANK`` (0 ..
``WORLD_SIZE - 1`` over every machine), ``LOCAL_RANK`` (its device on this
machine), ``WORLD_SIZE``, ``MASTER_ADDR`` / ``MASTER_PORT`` (where the ranks
meet). ``init_distributed`` reads them and joins the process group:

- on a machine with CUDA (unless ``device="cpu"``): NCCL, device
  ``cuda:<LOCAL_RANK>``;
- otherwise gloo on the CPU (how every test here runs: 2 processes, 1 core each).

Without torchrun it returns a one-process ``DistEnv`` and joins nothing, so the
same program runs as ``python`` and as ``torchrun``.

``all_mean`` averages a dict of scalars over the ranks in one all-reduce;
``any_rank`` tells every rank whether one of them saw something (a signal),
so they all stop at the same step.

Left out: elastic membership changes (torchrun's ``--max-restarts`` restarts
the whole group; the run resumes from its checkpoint) and process groups other
than the world (tensor or pipeline parallel sub-groups).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "launched", "init_distributed", "current_env", "cleanup", "barrier",
           "all_mean", "any_rank"]

_ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
TIMEOUT_ENV = "NANOCHAT_DIST_TIMEOUT_S"


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the launch."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None        # "gloo" | "nccl" | None (one process, no group)
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def launched() -> bool:
    """Whether torchrun (or anything that sets RANK, WORLD_SIZE, LOCAL_RANK) started us."""
    return all(k in os.environ for k in _ENV_KEYS)


def _ints_from_env() -> tuple[int, int, int]:
    try:
        rank, world, local = (int(os.environ[k]) for k in _ENV_KEYS)
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers; got "
                         + ", ".join(f"{k}={os.environ.get(k)!r}" for k in _ENV_KEYS)) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"bad launch environment: RANK={rank}, WORLD_SIZE={world}, "
                         f"LOCAL_RANK={local} (need 0 <= RANK < WORLD_SIZE)")
    return rank, world, local


def init_distributed(device: str | None = None, backend: str | None = None) -> DistEnv:
    """Join the launch's process group (once) and return this process's ``DistEnv``.

    ``device``: None picks CUDA when there is one, else the CPU; "cpu" forces
    gloo on the CPU even on a GPU machine. ``backend`` overrides the choice
    (nccl for CUDA, gloo for the CPU).
    """
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        raise ValueError("device='cuda' but torch sees no CUDA device; use device='cpu'")
    if not launched():
        dev = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
        return DistEnv(device=dev)
    rank, world, local = _ints_from_env()
    backend = backend or ("nccl" if use_cuda else "gloo")
    if use_cuda:
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world,
                                device_id=dev if use_cuda else None, timeout=_timeout())
    return DistEnv(rank, world, local, dist.get_backend(), dev)


def _timeout():
    """``NANOCHAT_DIST_TIMEOUT_S``: how long a collective waits for a rank that never comes
    (torch's default, 10 min for NCCL and 30 for gloo, when unset); tests set a short one."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return timedelta(seconds=seconds)


def current_env() -> DistEnv:
    """The ``DistEnv`` of an already joined group (or of one process when there is none)."""
    if not dist.is_initialized():
        return DistEnv()
    backend = dist.get_backend()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    dev = torch.device("cuda", local) if backend == "nccl" else torch.device("cpu")
    return DistEnv(dist.get_rank(), dist.get_world_size(), local, backend, dev)


def cleanup(wait: bool = False) -> None:
    """Leave the process group (at the end of a torchrun program); ``wait=True`` first waits
    for every rank to get here (the normal end: no rank leaves while another still talks)."""
    if dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


# ----------------------------------------------------------------------------- collectives


def _device() -> torch.device:
    return current_env().device


def all_mean(values: dict) -> dict:
    """Every value (a float or a one-element tensor) averaged over the ranks, in one all-reduce
    of a float64 vector; the keys must be the same on every rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1 or not values:
        return {k: float(v) for k, v in values.items()}
    keys = list(values)
    vec = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_device())
    dist.all_reduce(vec, op=dist.ReduceOp.SUM)
    vec /= dist.get_world_size()
    return dict(zip(keys, vec.tolist()))


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
