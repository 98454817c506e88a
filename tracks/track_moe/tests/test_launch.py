"""``spawn``: the ranks really form one gloo group, and a rank's error reaches the caller."""

import pytest
import torch
import torch.distributed as dist

from track_moe.launch import spawn

pytestmark = pytest.mark.core


def _sum_ranks(rank, world, folder):
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)                               # 1 + 2
    torch.save({"sum": float(t), "world": dist.get_world_size(), "threads": torch.get_num_threads()},
               f"{folder}/r{rank}.pt")


def _fails(rank, world, message):
    if rank == 1:
        raise NotImplementedError(message) if message.startswith("not implemented") else ValueError(message)
    dist.barrier()


def test_two_ranks_share_one_group(tmp_path):
    spawn(_sum_ranks, 2, args=(str(tmp_path),))
    for r in range(2):
        got = torch.load(tmp_path / f"r{r}.pt")
        assert got == {"sum": 3.0, "world": 2, "threads": 1}


def test_a_failing_rank_is_raised_here():
    with pytest.raises(RuntimeError, match="(?s)a rank failed.*ValueError: boom"):
        spawn(_fails, 2, args=("boom",), timeout_s=20)
    with pytest.raises(NotImplementedError, match="not implemented yet: x"):
        spawn(_fails, 2, args=("not implemented yet: x",), timeout_s=20)
