"""The torchrun command line: a rank SIGKILLed mid-run, then a resume, gives the loss curve of
an uninterrupted run; a 2-rank FSDP2 run continues in one process (a reshard, 2 -> 1); bad
input ends with one line."""

import json
import subprocess
import sys

import pytest

TRAIN = ["-m", "week11_scale.train", "--preset", "test", "--batch-size", "2", "--block-size",
         "16", "--warmup-steps", "2", "--eval-every", "0", "--no-progress"]


def losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.core
def test_a_rank_killed_mid_run_then_resumed_gives_the_uninterrupted_loss_curve(
        torchrun_py, data_dir, tmp_path):
    args = [*TRAIN, "--data", data_dir, "--steps", "8", "--ckpt-every", "2",
            "--strategy", "fsdp"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    torchrun_py(args[0], *args[1:], "--out", whole)
    died = torchrun_py(args[0], *args[1:], "--out", broken, check=False,
                       env={"NANOCHAT_KILL_AT_STEP": "5", "NANOCHAT_KILL_RANK": "1"})
    assert died.returncode != 0                        # torchrun saw rank 1 die
    assert sorted(p.name for p in (broken / "checkpoints").glob("step_*")) == [
        "step_0000002", "step_0000004"]                # kill at 5: no checkpoint of step 5 or 6
    assert max(losses(broken)) < 8
    torchrun_py(args[0], *args[1:], "--out", broken, "--resume")
    a, b = losses(whole), losses(broken)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    assert [b[s] for s in a] == pytest.approx([a[s] for s in a], rel=1e-6)


@pytest.mark.stretch
def test_a_two_rank_fsdp_run_continues_in_one_process(torchrun_py, data_dir, tmp_path):
    """Steps 1-4 on 2 ranks x 2 rows (FSDP2), steps 5-8 in one process with 4 rows: the same
    curve as 8 steps on 2 ranks (the global batch is the same; only the rounding differs)."""
    args = [*TRAIN, "--data", data_dir, "--steps", "8", "--ckpt-every", "4",
            "--strategy", "fsdp"]
    whole, moved = tmp_path / "whole", tmp_path / "moved"
    torchrun_py(args[0], *args[1:], "--out", whole)
    stopped = torchrun_py(args[0], *args[1:], "--out", moved, check=False,
                          env={"NANOCHAT_KILL_AT_STEP": "4"})     # both ranks stop at step 4
    assert stopped.returncode != 0 and max(losses(moved)) == 4
    def alone(batch):
        return subprocess.run([sys.executable, *TRAIN, "--data", str(data_dir), "--steps", "8",
                               "--batch-size", str(batch), "--strategy", "none", "--out",
                               str(moved), "--resume"], capture_output=True, text=True,
                              timeout=240)

    refused = alone(2)                        # 1 x 2 rows is not the 2 x 2 it trained on
    assert refused.returncode == 2 and "keep world_size x batch_size the same" in refused.stderr
    out = alone(4)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1])["world_size"] == 1
    a, b = losses(whole), losses(moved)
    assert [b[s] for s in range(1, 9)] == pytest.approx([a[s] for s in range(1, 9)], rel=1e-5)


@pytest.mark.core
def test_bad_input_is_one_line_and_exit_2(data_dir, tmp_path):
    def cli(*extra):
        return subprocess.run([sys.executable, *TRAIN, "--data", str(data_dir), *extra],
                              capture_output=True, text=True, timeout=120)

    out = cli("--strategy", "fsdp", "--steps", "1", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "needs a process group: launch with torchrun" in out.stderr
    out = cli("--total-batch-tokens", "100", "--out", str(tmp_path / "y"))
    assert out.returncode == 2 and "not a positive multiple of batch_size x block_size" in out.stderr
    out = cli("--resume", "--out", str(tmp_path / "empty"))
    assert out.returncode == 2 and "no complete checkpoint" in out.stderr


@pytest.mark.stretch
def test_zero1_with_muon_stops_and_resumes_exactly(torchrun_py, data_dir, tmp_path):
    """ZeRO-1 partitions Muon's state by rank; the checkpoint keeps it consolidated (rank 0
    gathers it), the model in DCP shards: stopping at step 3 and resuming gives the same curve."""
    args = [*TRAIN, "--data", data_dir, "--steps", "6", "--ckpt-every", "3",
            "--strategy", "zero1", "--optimizer", "muon"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    torchrun_py(args[0], *args[1:], "--out", whole)
    out = torchrun_py(args[0], *args[1:], "--out", stopped, check=False,
                      env={"NANOCHAT_KILL_AT_STEP": "3"})
    assert out.returncode != 0 and max(losses(stopped)) == 3
    torchrun_py(args[0], *args[1:], "--out", stopped, "--resume")
    a, b = losses(whole), losses(stopped)
    assert [b[s] for s in range(1, 7)] == pytest.approx([a[s] for s in range(1, 7)], rel=1e-6)


@pytest.mark.stretch
def test_sigterm_to_torchrun_checkpoints_every_rank_at_the_same_step(data_dir, tmp_path, launch):
    """torchrun forwards SIGTERM to its workers; they agree on the step (one all-reduce of the
    flag per step), write one sharded checkpoint of it and exit; --resume continues there."""
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={port}", *TRAIN, "--data", str(data_dir),
           "--steps", "100000", "--strategy", "fsdp", "--out", str(out)]
    run = launch(cmd)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert run.proc.poll() is None and time.monotonic() < deadline, run.wait(10).stderr
        time.sleep(0.2)
    run.proc.send_signal(signal.SIGTERM)
    err = run.wait(120).stderr
    assert "stopped by SIGTERM" in err
    (ckpt,) = (out / "checkpoints").glob("step_*")
    step = int(ckpt.name.split("_")[1])
    assert step == max(losses(out)) and {"rng_0.safetensors", "rng_1.safetensors"} <= {
        p.name for p in ckpt.iterdir()}
    resumed = subprocess.run([sys.executable, *TRAIN, "--data", str(data_dir), "--out", str(out),
                              "--resume", "--steps", str(step + 2), "--batch-size", "4",
                              "--strategy", "none"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {step}" in resumed.stderr and max(losses(out)) == step + 2
