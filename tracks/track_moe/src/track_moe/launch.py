"""Start W CPU processes joined by a gloo process group and run one function in each.

``spawn(fn, world_size=2, args=())`` runs ``fn(rank, world_size, *args)`` in ``world_size``
processes (``torch.multiprocessing``; "fork" on Linux, so the children start with torch
already imported: about a second instead of an import per rank), each with one thread and
a gloo group on 127.0.0.1 at a free port. The children apply a learner's exercise swaps
(``shared.exercises.apply_env_swaps``) first; each rank that raises writes its traceback to a
temporary folder, and the failure is re-raised here from the rank that caused it (not a
peer that only lost its connection), as the ``NotImplementedError`` it was when a
learner's stub ran. ``fn`` returns nothing: results
travel through files (``torch.save``) the caller names.

week11 launches its runs with ``torchrun`` (one program per rank, the way a cluster does);
here the unit under test is one layer, so a function per rank is enough, and faster.

Left out: NCCL and GPUs (``init_distributed`` of week11 picks them under torchrun), several
machines, and timeouts per collective other than the process group's.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["spawn", "free_port"]


# ---------------------------------------------------------------- the ranks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn, world_size: int, port: int, args: tuple, timeout_s: float,
            errors: str) -> None:
    from shared.exercises import apply_env_swaps

    try:
        torch.set_num_threads(1)
        apply_env_swaps()
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=timeout_s))
        try:
            fn(rank, world_size, *args)
        finally:
            dist.destroy_process_group()
    except BaseException:
        # every rank's own error: the first rank to die is often a peer of the one that failed
        Path(errors, f"rank{rank}.txt").write_text(traceback.format_exc())
        raise


def spawn(fn, world_size: int = 2, args: tuple = (), timeout_s: float = 120,
          start_method: str | None = None) -> None:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` gloo ranks; raise what a rank raised."""
    method = start_method or ("fork" if sys.platform.startswith("linux") else "spawn")
    with tempfile.TemporaryDirectory(prefix="track_moe-ranks-") as errors:
        try:
            mp.start_processes(_worker, nprocs=world_size, join=True, start_method=method,
                               args=(fn, world_size, free_port(), tuple(args), timeout_s, errors))
        except mp.ProcessRaisedException as e:
            texts = [p.read_text() for p in sorted(Path(errors).glob("rank*.txt"))] or [str(e)]
            stub = re.search(r"NotImplementedError: (not implemented yet[^\n]*)", "\n".join(texts))
            if stub:
                raise NotImplementedError(stub.group(1)) from None
            first = [t for t in texts if "gloo/transport" not in t] or texts   # not a peer's
            raise RuntimeError("a rank failed:\n" + first[0]) from None


# ---------------------------------------------------------------- a smoke check


if __name__ == "__main__":  # a smoke check: python -m track_moe.launch
    def _hello(rank, world):
        t = torch.tensor([rank + 1.0])
        dist.all_reduce(t)
        print(f"rank {rank}/{world}: sum of ranks + 1 = {float(t)}", flush=True)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    spawn(_hello)
