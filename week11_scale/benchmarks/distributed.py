"""DDP vs FSDP2 vs ZeRO-1 through week11's trainer: tokens/s, scaling, communication, memory.

    python week11_scale/benchmarks/distributed.py                      # ~2 min on 2 CPU cores
    python week11_scale/benchmarks/distributed.py --strategies ddp,fsdp --steps 20
    python week11_scale/benchmarks/distributed.py --preset small --batch-size 2
    python week11_scale/benchmarks/distributed.py --smoke              # seconds: a tiny model

One week04 ``Llama`` (default ``LlamaConfig.from_depth(4, head_dim=64)``: 4 layers, width
256, vocab 4096, 5.25M parameters) is trained on week02 token shards of pydocs
(``week03_training.train.ensure_data("pydocs", 4096)``, tokenized once in this process)
by ``week11_scale.trainer.DistributedTrainer``, week03's Trainer with the data-parallel
seams filled in. Each run is a fresh launch of ``python -m torch.distributed.run
--nproc_per_node=N --master_addr=127.0.0.1 --master_port=<free>`` of
``benchmarks/_worker.py`` (gloo on the CPU, NCCL on CUDA via
``week11_scale.launch.init_distributed``; ``--threads`` torch threads per process, default
1): first one process with strategy ``none``, then two processes for each of ddp, fsdp
and zero1, all with the same per-rank batch (``--batch-size`` x ``--block-size``), AdamW,
fp32. Reported per strategy:

- tok/s: tokens of every rank per optimizer step / that step's wall time, the median over
  ``--steps`` timed steps after ``--warmup`` untimed ones (rank 0's clock; the ranks are
  in lock-step through the collectives). efficiency = tok/s(2) / (2 * tok/s(1 process)).
- comm ms/step: over ``--profile-steps`` further steps under ``torch.profiler``, the union
  of the intervals in which any collective executes (gloo's ``gloo:all_reduce`` /
  ``all_gather`` / ``broadcast`` events, timed on gloo's worker threads from the start to
  the end of the collective; on CUDA the NCCL kernels), the mean over the ranks. It counts DDP's bucketed gradient
  all-reduces and its buffer broadcast, FSDP2's all-gathers (forward and backward) and
  reduce-scatters (which gloo runs as all-reduces), ZeRO-1's all-reduces and its per-
  parameter broadcasts after the step, and the trainer's one small metrics all-reduce per
  step. A collective also includes waiting for the slower rank to arrive. Overlap: DDP's
  all-reduces run during the rest of the backward, FSDP2 prefetches the next block's
  all-gather during the current block's compute, so their comm time is not all added to
  the step; ZeRO-1's broadcasts follow the optimizer step and are fully exposed. comm % =
  comm ms / the profiled steps' wall ms (both means over the ranks; the profiler itself
  slows the steps a little). On 2 shared cores the gloo threads also compete with compute for the CPU.
- memory per rank, counted from the local tensors after the timed steps: parameters (+
  the RoPE buffers, as the planner counts them), gradients, AdamW state (FSDP2: each
  DTensor's ``to_local()``; ZeRO-1: ``optimizer.optim.state``), the max over ranks; next to
  them what ``week11_scale.plan.memory_plan`` predicts (``PlanConfig(gpus=W, strategy,
  micro_batch, seq_len, dtype="fp32", kernels="cpu")``), and the peak RSS of the rank
  process (VmHWM, ``week11_scale.memory.peak_rss``) above its RSS just before the model was built, against the
  plan's peak (RSS also holds the allocator's cache, gloo's buffers, DDP's buckets and
  autograd's temporaries: a measurement, not the same quantity).

Prints a markdown table; saves the figures with ``shared.save_benchmark("week11_distributed",
...)`` (``runs/bench/week11_distributed.json``; not with ``--smoke``). ``--json PATH`` also
writes every run's per-rank figures there.

Measured (2026-12-01, 2 shared CPU cores (Intel Xeon), gloo, 1 thread per process,
``python week11_scale/benchmarks/distributed.py``, default flags, 60 s; peak RSS as VmHWM)::

  strategy  tok/s 1p  tok/s 2p  eff   comm ms  comm %  params  grads  optim  planned p/g/o  RSS
  none      2242      -         -     -        -       20.20   20.01  40.02  20.2/20.0/40.0 523
  ddp       2242      3676      0.82  142      21      20.20   20.01  40.02  20.2/20.0/40.0 565
  fsdp      2242      3233      0.72  129      16      10.19   10.01  20.01  10.2/10.0/20.0 522
  zero1     2242      4048      0.90  60       13      20.20   20.01  20.01  20.2/20.0/20.0 544

(MiB per rank; the planner's peaks: 219, 239, 207, 219 MiB.)

Read: the counted bytes are the planner's to the byte (parameters + RoPE tables, fp32
grads, AdamW's m and v; the 4-byte step counters aside): FSDP2 halves all three, ZeRO-1
only the optimizer state. ZeRO-1 is the fastest here, probably because each rank runs
AdamW on half the parameters (one thread: the update is a visible part of a step), which
pays for its per-parameter broadcasts; FSDP2 gathers every block twice per step (forward
and backward) and loses most. The two ranks wait differently (an earlier run, ddp: 94 vs 27 ms of
collectives): a collective's time includes waiting for the other rank. Peak RSS sits
300-330 MiB above the plan on every row, the 1-process one too: torch's kernels paged in
at the first step, the allocator's cache and temporaries are in RSS, not in the plan. Timings on 2 shared cores
vary run to run by 10-30% (earlier runs: efficiencies 0.79 / 0.66 / 0.84, and 0.70 / 0.44 /
0.53 under load).

Left out: more than 2 processes (this CPU has 2 cores), multi-node, bf16 and gradient
accumulation, activation checkpointing, Muon, and the exposed (non-overlapped) share of
the communication, which would need a run with the collectives skipped to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from shared import add_threads_argument, is_smoke, save_benchmark, set_threads

HERE = Path(__file__).resolve().parent
STRATEGIES = ("ddp", "fsdp", "zero1")
MIB = 2**20

# --------------------------------------------------------------------------- settings


@dataclass
class BenchConfig:
    strategies: tuple[str, ...] = STRATEGIES
    depth: int = 4                  # LlamaConfig.from_depth(depth, head_dim=64) unless preset
    preset: str | None = None       # a LlamaConfig.presets() name (vocab, block_size replaced)
    vocab_size: int = 4096          # the BPE vocabulary ensure_data tokenizes pydocs with
    batch_size: int = 4             # sequences per rank per step
    block_size: int = 256
    steps: int = 10                 # timed steps
    warmup: int = 2
    profile_steps: int = 2
    threads: int = 1                # torch threads per process
    data: str = "pydocs"            # 'pydocs' or a week02 prepared folder
    smoke: bool = False
    timeout: float = 600.0          # seconds per launch

    def __post_init__(self):
        problems = []
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            problems.append(f"unknown strategies {bad}; valid: {', '.join(STRATEGIES)}")
        for name in ("depth", "vocab_size", "batch_size", "block_size", "steps",
                     "profile_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                flag = "model-depth" if name == "depth" else name.replace("_", "-")
                problems.append(f"--{flag} must be an int >= 1, got {v!r}")
        if self.warmup < 0 or self.threads < 0:
            problems.append("--warmup and --threads must be >= 0")
        if self.preset is not None:
            from week04_modern_arch_tools import LlamaConfig
            if self.preset not in LlamaConfig.presets():
                problems.append(f"unknown preset {self.preset!r}; valid: "
                                f"{', '.join(LlamaConfig.presets())}")
        if problems:
            raise ValueError("; ".join(problems))


SMOKE = dict(batch_size=2, block_size=32, steps=3, warmup=1, profile_steps=1, vocab_size=512,
             timeout=180.0)

# --------------------------------------------------------------------------- launching


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(p: subprocess.Popen) -> None:
    """End a torchrun launch: SIGTERM to the launcher, which terminates its workers (they run
    in sessions of their own), then SIGKILL to the launcher's group if it is still there."""
    p.send_signal(signal.SIGTERM)
    try:
        p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def launch(spec: dict, nproc: int, workdir: Path, timeout: float) -> dict:
    """Run ``_worker.py`` under torchrun with ``nproc`` processes; its rank-0 JSON result."""
    name = f"{spec['strategy']}-{nproc}"
    spec_path, out = workdir / f"{name}.spec.json", workdir / f"{name}.out.json"
    # the workers' own watchdog fires first (faulthandler: their stacks, then exit)
    spec_path.write_text(json.dumps({**spec, "run_dir": str(workdir / name),
                                     "timeout": max(1.0, timeout - 15)}))
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"] or os.cpu_count())}
    for _ in range(2):              # the free port can be taken between bind and use: retry once
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--nnodes=1", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
               str(HERE / "_worker.py"), str(spec_path), str(out)]
        # a session of its own, so a timeout ends the launcher and its workers together
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, start_new_session=True)
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(p)
            raise RuntimeError(f"{name}: torchrun ran past {timeout:.0f} s; stopped") from None
        if p.returncode == 0 or "address already in use" not in stderr.lower():
            break
    if p.returncode != 0 or not out.is_file():
        raise RuntimeError(f"{name}: torchrun failed ({p.returncode}):\n{stdout[-2000:]}\n"
                           f"{stderr[-4000:]}")
    return json.loads(out.read_text())


# --------------------------------------------------------------------------- figures


def summarize(run: dict, single: dict | None) -> dict:
    """A table row from one launch's result (per-rank maxima) and the 1-process baseline."""
    ranks = run["ranks"]
    r0 = ranks[0]
    tok_s = run["tokens_per_step"] / r0["median_step_s"]
    row = {"strategy": run["strategy"], "world_size": run["world_size"], "tok_s": tok_s,
           "n_params": run["n_params"]}
    for k in ("param_bytes", "buffer_bytes", "grad_bytes", "optim_bytes", "peak_bytes"):
        row[k] = max(r[k] for r in ranks)
        row[f"{k}_per_rank"] = [r[k] for r in ranks]
    row["weight_bytes"] = max(r["param_bytes"] + r["buffer_bytes"] for r in ranks)
    for k in ("plan_param_bytes", "plan_grad_bytes", "plan_optim_bytes", "plan_bucket_bytes",
              "plan_peak_bytes"):
        row[k] = run[k]
    if run["world_size"] > 1:
        mean = lambda k: sum(r[k] for r in ranks) / len(ranks)  # noqa: E731
        row["comm_ms"] = mean("comm_ms")                # the ranks differ: one waits longer
        row["comm_pct"] = 100 * mean("comm_ms") / mean("profiled_step_ms")
        row["comm_ops_ms"] = [r["comm_ops_ms"] for r in ranks]
        row["comm_ms_per_rank"] = [r["comm_ms"] for r in ranks]
    if single is not None:
        row["tok_s_1p"] = single["tok_s"]
        row["efficiency"] = tok_s / (run["world_size"] * single["tok_s"])
    return row


def table(single: dict, rows: list[dict], peak: str = "RSS") -> str:
    head = ("| strategy | tok/s 1p | tok/s 2p | efficiency | comm ms/step | comm % | params MiB "
            f"| grads MiB | optim MiB | planned p/g/o MiB | peak {peak} MiB | planned peak MiB |")
    lines = [head, "|" + "---|" * 12]

    def mib(b):
        return f"{b / MIB:.2f}"

    for r in [single, *rows]:
        two = r["world_size"] > 1
        planned = "/".join(mib(r[k]) for k in ("plan_param_bytes", "plan_grad_bytes",
                                                "plan_optim_bytes"))
        lines.append(
            f"| {r['strategy']} | {single['tok_s']:.0f} | {r['tok_s']:.0f} " if two else
            f"| {r['strategy']} (1 process) | {r['tok_s']:.0f} | - ")
        lines[-1] += (f"| {r['efficiency']:.2f} | {r['comm_ms']:.0f} | {r['comm_pct']:.0f} "
                      if two else "| - | - | - ")
        lines[-1] += (f"| {mib(r['weight_bytes'])} | {mib(r['grad_bytes'])} | "
                      f"{mib(r['optim_bytes'])} | {planned} | {mib(r['peak_bytes'])} | "
                      f"{mib(r['plan_peak_bytes'])} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def measure(cfg: BenchConfig, progress: bool = True, workdir: Path | None = None) -> dict:
    """Every launch; the rows (1 process first) and the raw per-rank results."""
    from week03_training.train import ensure_data

    data = ensure_data(cfg.data, cfg.vocab_size, progress=progress)
    spec = {"data": str(data), "depth": cfg.depth, "preset": cfg.preset, "smoke": cfg.smoke,
            "batch_size": cfg.batch_size, "block_size": cfg.block_size, "steps": cfg.steps,
            "warmup": cfg.warmup, "profile_steps": cfg.profile_steps, "threads": cfg.threads}
    jobs = [("none", 1)] + [(s, 2) for s in cfg.strategies]
    raw = []
    with tempfile.TemporaryDirectory(prefix="w11-bench-", dir=workdir) as tmp:
        for strategy, nproc in tqdm(jobs, desc="launches", disable=not progress):
            raw.append(launch({**spec, "strategy": strategy}, nproc, Path(tmp), cfg.timeout))
    single = summarize(raw[0], None)
    rows = [summarize(r, single) for r in raw[1:]]
    return {"single": single, "rows": rows, "raw": raw, "data": str(data)}


def main(argv: list[str] | None = None) -> int:
    d = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help=f"comma-separated, from {', '.join(STRATEGIES)}")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--model-depth", type=int, default=d.depth,
                      help="LlamaConfig.from_depth(N, head_dim=64)")
    size.add_argument("--preset", default=None, help="a LlamaConfig preset instead")
    p.add_argument("--vocab-size", type=int, default=d.vocab_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per rank")
    p.add_argument("--block-size", type=int, default=d.block_size)
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps")
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--profile-steps", type=int, default=d.profile_steps)
    p.add_argument("--data", default=d.data, help="'pydocs' or a week02 prepared folder")
    p.add_argument("--json", default=None, help="also write every figure to this file")
    p.add_argument("--smoke", action="store_true", help="a tiny model, 3 timed steps: seconds")
    p.add_argument("--no-progress", action="store_true")
    add_threads_argument(p)

    def one_line(message: str):
        print(f"distributed.py: {message}; see --help", file=sys.stderr)
        raise SystemExit(2)

    p.error = one_line
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    smoke = a.smoke or is_smoke()
    try:
        cfg = BenchConfig(
            strategies=tuple(s.strip() for s in a.strategies.split(",") if s.strip()),
            depth=a.model_depth, preset=a.preset, vocab_size=a.vocab_size,
            batch_size=a.batch_size, block_size=a.block_size, steps=a.steps, warmup=a.warmup,
            profile_steps=a.profile_steps, threads=a.threads, data=a.data, smoke=smoke)
        if smoke:
            cfg = BenchConfig(**{**asdict(cfg), **SMOKE, "data": a.data})
    except ValueError as e:
        print(f"distributed.py: {e}", file=sys.stderr)
        return 2
    if a.data != "pydocs" and not (Path(a.data) / "index.json").is_file():
        print(f"distributed.py: --data {a.data!r} is not a week02 prepared folder (no "
              "index.json); give one, or 'pydocs'", file=sys.stderr)
        return 2
    set_threads(a.threads)                       # this process only tokenizes; workers: spec
    res = measure(cfg, progress=not a.no_progress)
    s, r0 = res["single"], res["raw"][0]
    model = ("tiny smoke Llama" if cfg.smoke else cfg.preset or f"from_depth({cfg.depth})")
    print(f"{model}: {s['n_params'] / 1e6:.2f}M parameters, vocab {r0['model']['vocab_size']}, "
          f"per-rank batch {cfg.batch_size} x {cfg.block_size}, AdamW fp32, "
          f"{r0['backend']} on {r0['device']}, {cfg.threads} thread(s)/process; median of "
          f"{cfg.steps} steps after {cfg.warmup} warm-up; comm over {cfg.profile_steps} "
          "profiled steps; memory: max over ranks\n")
    print(table(s, res["rows"], "RSS" if r0["device"] == "cpu" else "CUDA"))
    payload = {"rows": [s, *res["rows"]], "config": asdict(cfg), "data": res["data"],
               "summary": {r["strategy"]: {"efficiency": r["efficiency"],
                                           "comm_pct": r["comm_pct"]} for r in res["rows"]}}
    if a.json:
        sys.path.insert(0, str(HERE))
        from _worker import write_json  # the worker's atomic writer (temp, fsync, replace)
        write_json(Path(a.json).resolve(), {**payload, "raw": res["raw"]})
    if not cfg.smoke:
        print(f"\nsaved {save_benchmark('week11_distributed', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
