"""One rank of ``benchmarks/distributed.py``: train under torchrun, time, profile, count memory.

    python -m torch.distributed.run --nproc_per_node=N ... _worker.py SPEC.json OUT.json

``SPEC.json`` (written by ``distributed.py``) names the data folder, the model, the per-rank
batch, the strategy and the step counts. Each rank builds week02's ``TokenLoader`` shard,
week04's ``Llama`` and ``week11_scale.trainer.DistributedTrainer``, then:

1. ``warmup`` steps (not timed), ``steps`` timed steps (``perf_counter`` around
   ``train_step``; CUDA synchronised);
2. the bytes this rank holds of parameters and buffers, gradients and optimizer state,
   counted from the local tensors (``to_local()`` of FSDP2's DTensors; ZeRO-1's local
   ``optimizer.optim.state``), and its peak RSS (VmHWM) above the RSS before the
   model was built (on CUDA: ``max_memory_allocated``);
3. ``profile_steps`` more steps under ``torch.profiler``: the union of the intervals in
   which a collective runs (gloo's ``gloo:*`` events on its worker threads, or NCCL's
   kernels on the GPU), per step and per op;
4. what ``week11_scale.plan.memory_plan`` predicts for the same run.

Every rank's figures are gathered to rank 0, which writes ``OUT.json`` atomically; then the
ranks leave the group together. A rank still running after the spec's ``timeout`` prints
every thread's stack (``faulthandler``) and exits, so no launch outlives its parent's wait.
Left out: Muon, bf16 autocast, gradient accumulation and activation checkpointing (one
setting, AdamW in fp32, so every strategy does the same arithmetic).
"""

from __future__ import annotations

import faulthandler
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.distributed as dist

from week02_bpe import TokenLoader
from week03_training import TrainConfig
from week04_modern_arch_tools import Llama, LlamaConfig
from week11_scale.launch import barrier, cleanup, init_distributed
from week11_scale.memory import peak_rss
from week11_scale.parallel import ParallelConfig
from week11_scale.plan import PlanConfig, memory_plan
from week11_scale.trainer import DistributedTrainer

# --------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    """This process's resident set now (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """The peak RSS of this worker's own program (``week11_scale.memory.peak_rss``: VmHWM, not
    ru_maxrss, which keeps torchrun's RSS at the fork as a floor)."""
    return peak_rss()


def local_bytes(t: torch.Tensor) -> int:
    """Bytes of this rank's part of ``t`` (a DTensor's local shard, else the tensor)."""
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.numel() * t.element_size()


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Every tensor of the optimizer state this rank holds (ZeRO-1: its local optimizer's)."""
    inner = getattr(optimizer, "optim", optimizer)          # ZeroRedundancyOptimizer.optim
    return sum(local_bytes(v) for state in inner.state.values() for v in state.values()
               if isinstance(v, torch.Tensor))


def held_bytes(trainer: DistributedTrainer) -> dict:
    model = trainer.raw_model
    return {"param_bytes": sum(local_bytes(p) for p in model.parameters()),
            "buffer_bytes": sum(local_bytes(b) for b in model.buffers()),
            "grad_bytes": sum(local_bytes(p.grad) for p in model.parameters()
                              if p.grad is not None),
            "optim_bytes": optimizer_bytes(trainer.optimizer)}


# --------------------------------------------------------------------------- communication


def _union_ms(intervals: list[tuple[float, float]]) -> float:
    """Total length (ms) of the union of (start_us, end_us) intervals."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if s > end:
            total, end = total + (e - s), e
        elif e > end:
            total, end = total + (e - end), e
    return total / 1e3


def comm_profile(trainer: DistributedTrainer, steps: int, cuda: bool) -> dict:
    """Collective time per step over ``steps`` profiled steps: the union of the intervals in
    which any collective runs (so two in flight at once count once), and each op's own sum."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    intervals, per_op = [], {}
    for e in prof.events():
        name = e.name
        if cuda:
            is_comm = e.device_type.name == "CUDA" and "nccl" in name.lower()
        else:
            is_comm = name.startswith("gloo:")
        if not is_comm:
            continue
        start, end = e.time_range.start, e.time_range.end
        intervals.append((start, end))
        key = name.split(":", 1)[1] if name.startswith("gloo:") else name
        per_op[key] = per_op.get(key, 0.0) + (end - start) / 1e3 / steps
    return {"comm_ms": _union_ms(intervals) / steps, "comm_ops_ms": per_op,
            "profiled_step_ms": 1e3 * wall / steps}


# --------------------------------------------------------------------------- one run


def model_config(spec: dict, vocab_size: int) -> LlamaConfig:
    T = spec["block_size"]
    if spec.get("smoke"):
        return LlamaConfig(vocab_size=vocab_size, block_size=T, n_layer=2, n_head=4,
                           n_kv_head=2, n_embd=64)
    if spec.get("preset"):
        return replace(LlamaConfig.presets()[spec["preset"]], vocab_size=vocab_size,
                       block_size=T)
    return LlamaConfig.from_depth(spec["depth"], vocab_size=vocab_size, block_size=T,
                                  head_dim=spec.get("head_dim", 64))


def planned(mcfg: LlamaConfig, spec: dict, world: int, cuda: bool) -> dict:
    strategy = spec["strategy"] if spec["strategy"] != "none" else "single"
    p = memory_plan(mcfg, PlanConfig(gpus=world, strategy=strategy,
                                     micro_batch=spec["batch_size"], seq_len=spec["block_size"],
                                     dtype="fp32", optimizer="adamw",
                                     kernels="cuda" if cuda else "cpu"))
    return {"plan_param_bytes": p.params, "plan_grad_bytes": p.grads,
            "plan_optim_bytes": p.optimizer, "plan_bucket_bytes": p.buckets,
            "plan_peak_bytes": p.peak}


def run(spec: dict) -> dict:
    env = init_distributed(spec.get("device"))
    cuda = env.device.type == "cuda"
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    T, B = spec["block_size"], spec["batch_size"]
    loader = TokenLoader(spec["data"], B, T, seed=spec.get("seed", 0), rank=env.rank,
                         world_size=env.world_size)
    mcfg = model_config(spec, loader.vocab_size)
    total = spec["warmup"] + spec["steps"] + spec["profile_steps"]
    cfg = TrainConfig(steps=total, batch_size=B, block_size=T, lr=1e-3, warmup_steps=1,
                      eval_every=0, progress=False, save_final=False, write_metrics=False,
                      device=env.device.type)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_bytes()
    torch.manual_seed(spec.get("seed", 0))
    model = Llama(mcfg)
    n_params = sum(p.numel() for p in model.parameters())
    trainer = DistributedTrainer(model, loader, cfg, env=env, run_dir=spec["run_dir"],
                                 parallel=ParallelConfig(strategy=spec["strategy"]))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(spec["warmup"]):
        trainer.train_step()
    times, losses = [], []
    for _ in range(spec["steps"]):
        sync()
        t0 = time.perf_counter()
        info = trainer.train_step()
        sync()
        times.append(time.perf_counter() - t0)
        losses.append(info["loss"])
    peak = (torch.cuda.max_memory_allocated() if cuda else peak_rss_bytes()) - base
    mine = {"rank": env.rank, **held_bytes(trainer), "peak_bytes": max(0, peak),
            "peak_kind": "cuda allocated" if cuda else "rss",
            "step_s": times, "median_step_s": statistics.median(times)}
    if env.world_size > 1:
        mine.update(comm_profile(trainer, spec["profile_steps"], cuda))
    ranks = [None] * env.world_size
    if env.world_size > 1:
        dist.all_gather_object(ranks, mine)
    else:
        ranks = [mine]
    return {"strategy": spec["strategy"], "world_size": env.world_size,
            "backend": env.backend, "device": str(env.device), "n_params": n_params,
            "model": asdict(mcfg), "tokens_per_step": trainer.tokens_per_step,
            "losses": losses, "ranks": ranks, **planned(mcfg, spec, env.world_size, cuda)}


def write_json(path: Path, obj: dict) -> None:
    """Atomically: a temp file in the same folder, fsync, os.replace, fsync the folder."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: _worker.py SPEC.json OUT.json (under torchrun)", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    if spec.get("timeout"):   # a hung rank prints every thread's stack and exits, never lingers
        faulthandler.dump_traceback_later(spec["timeout"], exit=True)
    result = run(spec)
    if int(os.environ.get("RANK", "0")) == 0:
        write_json(Path(argv[1]), result)
    barrier()                 # the ranks leave the group together, after the result is written
    cleanup()
    faulthandler.cancel_dump_traceback_later()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
