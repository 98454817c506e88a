"""DDP, FSDP2 and ZeRO-1 under torchrun (2 CPU processes, gloo) against one process.

The reference is week03's Trainer in this process with the same model, data, optimizer and the
global batch in one piece (batch_size * world_size rows, week02's loader unsharded).
"""

from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).parent / "dist_scripts"


@pytest.mark.core
def test_ddp_fsdp2_and_zero1_equal_one_process_at_the_same_global_batch(
        torchrun_py, data_dir, tmp_path, one_process, assert_same_run):
    """Two ranks x 2 rows x 2 micro-batches (no sync on the first) equal one process with 4
    rows x 2 micro-batches: losses and first-step gradients to 1e-6 (DDP, ZeRO-1) and 1e-5
    (FSDP2), parameters after 4 AdamW steps likewise. A step of 2 micro-batches makes as many
    gradient collectives as a step of 1 (DDP's comm hook, FSDP2's reduce calls, counted)."""
    out = tmp_path / "res.pt"
    torchrun_py(SCRIPTS / "train_equal.py", data_dir, out, 4, 2, "adamw", "ddp,fsdp,zero1",
                "syncs")
    res = torch.load(out, weights_only=False)
    ref = one_process(data_dir, 4, 2, "adamw", tmp_path)
    for strategy in ("ddp", "fsdp", "zero1"):    # the inner micro-batch synced nothing
        many, one = res[strategy]["syncs"]
        assert many == one > 0, (strategy, many, one)
    assert_same_run(res["ddp"], ref, rtol=1e-6, atol=1e-7)
    assert_same_run(res["zero1"], ref, rtol=1e-6, atol=1e-7)
    assert_same_run(res["fsdp"], ref, rtol=1e-5, atol=1e-6)
    assert res["ddp"]["tokens_per_step"] == 2 * 2 * 16 * 2


@pytest.mark.stretch
def test_muon_and_activation_checkpointing_under_ddp_fsdp2_and_zero1(
        torchrun_py, data_dir, tmp_path, one_process, assert_same_run):
    """Muon (AdamW for embeddings, head and norms) with every block checkpointed: DDP runs NS
    on the all-reduced matrices, FSDP2 on the gathered ones, ZeRO-1 on each rank's own; all
    equal one process without checkpointing."""
    out = tmp_path / "res.pt"
    torchrun_py(SCRIPTS / "train_equal.py", data_dir, out, 3, 1, "muon", "ddp,fsdp,zero1", "ac")
    res = torch.load(out, weights_only=False)
    ref = one_process(data_dir, 3, 1, "muon", tmp_path)
    for strategy in ("ddp", "fsdp", "zero1"):
        assert_same_run(res[strategy], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.stretch
def test_two_nodes_on_localhost_equal_one_process(data_dir, tmp_path, one_process,
                                                  assert_same_run, launch):
    """Two "machines" the way torchrun joins them: --nnodes=2, --node_rank 0 and 1, one process
    each, meeting at 127.0.0.1 (static rendezvous); DDP over the pair equals one process."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "res.pt"
    runs = [launch(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
         "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}",
         str(SCRIPTS / "train_equal.py"), str(data_dir), str(out), "3", "2", "adamw", "ddp"])
        for rank in (0, 1)]
    done = [r.wait(240) for r in runs]
    assert [d.returncode for d in done] == [0, 0], [d.stderr[-3000:] for d in done]
    res = torch.load(out, weights_only=False)["ddp"]
    assert_same_run(res, one_process(data_dir, 3, 2, "adamw", tmp_path), rtol=1e-6, atol=1e-7)


@pytest.mark.stretch
def test_fsdp2_in_bf16_mixed_precision_trains_like_bf16_autocast_in_one_process(
        torchrun_py, data_dir, tmp_path, one_process):
    """MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32) on sharded fp32 master weights,
    under the Trainer's bf16 autocast, against one process with bf16 autocast: the same run to
    bf16's precision (the gathered weights are rounded to bf16 once, not per matmul)."""
    out = tmp_path / "res.pt"
    torchrun_py(SCRIPTS / "train_equal.py", data_dir, out, 4, 1, "adamw", "fsdp,ddp", "bf16")
    res = torch.load(out, weights_only=False)
    ref = one_process(data_dir, 4, 1, "adamw", tmp_path, dtype="bf16")
    for strategy in ("fsdp", "ddp"):
        assert res[strategy]["losses"] == pytest.approx(ref["losses"], rel=3e-3)
        for name, p in ref["params"].items():
            assert p.dtype == res[strategy]["params"][name].dtype == torch.float32  # fp32 masters
    assert res["fsdp"]["losses"][-1] < res["fsdp"]["losses"][0]
