"""FlashAttention-2's memory and time: ours (PyTorch, Triton) vs naive attention and SDPA.

    python week08_sota/benchmarks/flash_memory.py                    # CPU, T = 512 ... 8192
    python week08_sota/benchmarks/flash_memory.py --T 512 1024 --time-T 512   # a quick look
    python week08_sota/benchmarks/flash_memory.py --device cuda      # + Triton and flash-attn

**Memory.** The peak memory of one causal forward plus backward (``y.backward(dy)``, the
gradients of q, k, v included), above what the inputs already hold, at each T for:
``naive`` (week01's ``"explicit"`` kernel: the (T, T) scores, probabilities and their
gradients materialised), ``ours`` (``flash2_torch``: tiles of ``--block``), and ``sdpa``
(PyTorch's fused kernel). How it is measured:

- on CUDA, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (the
  caching allocator counts every tensor, inside fused kernels too);
- on the CPU there is no such counter (tracemalloc does not see torch's allocations and
  the profiler's memory events are attributed to ops, not a timeline), so each point runs
  in a fresh subprocess and reads the kernel's own high-water mark of resident memory:
  ``echo 5 > /proc/self/clear_refs`` resets ``VmHWM`` to the current RSS just before the
  call, ``VmHWM - VmRSS(before)`` after it is the peak. PyTorch's CPU allocator does not
  cache, and ``MALLOC_MMAP_THRESHOLD_=65536`` makes glibc map every block above 64 KiB
  on its own and unmap it on free (no heap fragmentation, no dynamic threshold), so the
  resident set follows live tensors, including the buffers fused kernels allocate
  internally. A warm-up call at a small T first keeps thread pools and lazy
  initialisation out of the figure. The exact bytes saved for backward (counted with
  ``torch.autograd.graph.saved_tensors_hooks``) are shown beside it.

The slope is the least-squares exponent of peak vs T on log-log axes (1 = linear, 2 =
quadratic). Target (the issue's): ours grows linearly (exponent < 1.2) and its peak at the
largest T is <= 1/8 of naive's.

**Time.** Median wall time of forward plus backward at ``--time-T`` for the three, the
ratio ours / SDPA, and a ``torch.profiler`` breakdown of ours by op: where the time goes.
On CUDA also the TFLOP/s of ``flash2_triton``, flash-attn (when installed) and SDPA in
bf16 (causal FLOPs: forward 2 * 2 * B * H * T^2 * hd / 2, backward 2.5 times that).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from shared import add_threads_argument, save_benchmark, set_threads
from week01_transformer.attention import explicit_attention
from week08_sota.flash import flash2_torch

KERNELS = ("naive", "ours", "sdpa")


def kernel(name: str, block: int):
    if name == "naive":
        return explicit_attention
    if name == "ours":
        return lambda q, k, v: flash2_torch(q, k, v, causal=True, block_q=block, block_k=block)
    if name == "triton":
        from week08_sota.flash_triton import flash2_triton
        return lambda q, k, v: flash2_triton(q, k, v, causal=True)
    if name == "flash_attn":
        from flash_attn import flash_attn_func
        return lambda q, k, v: flash_attn_func(q.transpose(1, 2), k.transpose(1, 2),
                                               v.transpose(1, 2), causal=True).transpose(1, 2)
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)


def inputs(B, H, T, hd, device, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, hd, generator=g).to(device, dtype).requires_grad_()
            for _ in range(3)]


def fwd_bwd(fn, q, k, v):
    y = fn(q, k, v)
    y.backward(torch.ones_like(y))
    q.grad = k.grad = v.grad = None


def saved_bytes(fn, q, k, v) -> int:
    """Bytes of the distinct storages autograd keeps for backward (inputs included)."""
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(q, k, v)
    return sum(seen.values())


# ---------------------------------------------------------------- one memory point


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def measure_point(name, B, H, T, hd, block, device) -> dict:
    fn = kernel(name, block)
    fwd_bwd(fn, *inputs(B, H, 64, hd, device))  # warm-up: thread pools, lazy init
    q, k, v = inputs(B, H, T, hd, device)
    saved = saved_bytes(fn, q, k, v)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fwd_bwd(fn, q, k, v)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        base = _status_kib("VmRSS")
        fwd_bwd(fn, q, k, v)
        peak = (_status_kib("VmHWM") - base) * 1024
    return {"kernel": name, "T": T, "peak_MiB": round(peak / 2**20, 2),
            "saved_MiB": round(saved / 2**20, 2)}


def point_in_subprocess(name, args, T) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    cmd = [sys.executable, __file__, "--_point", name, str(T), "--batch", str(args.batch),
           "--heads", str(args.heads), "--head-dim", str(args.head_dim),
           "--block", str(args.block), "--device", args.device, "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def loglog_slope(ts, ys) -> float:
    xs, ys = [math.log(t) for t in ts], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


# ---------------------------------------------------------------- time


def median_time(fn, q, k, v, repeats, device) -> float:
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    fwd_bwd(fn, q, k, v)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fwd_bwd(fn, q, k, v)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def breakdown(fn, q, k, v) -> tuple[list[dict], float]:
    """Self CPU time by op for one forward + backward of ours, and the wall time."""
    from torch.profiler import ProfilerActivity, profile
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fwd_bwd(fn, q, k, v)
    wall = time.perf_counter() - t0
    ev = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in ev)
    rows = [{"op": e.key, "calls": e.count, "self_ms": round(e.self_cpu_time_total / 1e3, 1),
             "share": round(e.self_cpu_time_total / total, 3)}
            for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)]
    return rows, wall


def gpu_tflops(args) -> list[dict]:
    """fwd+bwd TFLOP/s in bf16 on CUDA: our Triton kernel, flash-attn, SDPA."""
    rows = []
    B, H, hd = args.batch, args.heads, args.head_dim
    for T in args.T:
        q, k, v = inputs(B, H, T, hd, args.device, torch.bfloat16)
        flops = 4 * B * H * T * T * hd / 2 * 3.5  # causal; backward 2.5x the forward
        for name in ("triton", "flash_attn", "sdpa"):
            try:
                fn = kernel(name, args.block)
                s = median_time(fn, q, k, v, args.repeats, args.device)
            except (ImportError, RuntimeError) as e:
                print(f"  ({name} at T={T}: {type(e).__name__}: {e})")
                continue
            rows.append({"kernel": name, "T": T, "ms": round(s * 1e3, 3),
                         "TFLOP/s": round(flops / s / 1e12, 2)})
            print(f"  {name:<11} T={T:<6} {s * 1e3:9.2f} ms {flops / s / 1e12:8.2f} TFLOP/s",
                  flush=True)
    return rows


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--block", type=int, default=128, help="ours: query and key block")
    ap.add_argument("--time-T", type=int, default=2048, help="sequence length of the timing")
    ap.add_argument("--repeats", type=int, default=3, help="timed forward+backward passes")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--_point", nargs=2, metavar=("KERNEL", "T"), help=argparse.SUPPRESS)
    add_threads_argument(ap)
    args = ap.parse_args()
    set_threads(args.threads)
    if args._point:
        r = measure_point(args._point[0], args.batch, args.heads, int(args._point[1]),
                          args.head_dim, args.block, args.device)
        print(json.dumps(r))
        return

    cuda = args.device.startswith("cuda")
    B, H, hd = args.batch, args.heads, args.head_dim
    print(f"B={B} H={H} hd={hd} fp32 causal, ours block {args.block}, device {args.device}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print("peak memory of forward + backward above the inputs "
          f"({'torch.cuda.max_memory_allocated' if cuda else 'VmHWM in a subprocess per point'})")
    names = [*KERNELS, "triton"] if cuda else list(KERNELS)
    rows = []
    for T in args.T:
        for name in names:
            r = (measure_point(name, B, H, T, hd, args.block, args.device) if cuda
                 else point_in_subprocess(name, args, T))
            rows.append(r)
            print(f"  {name:<7} T={T:<6} peak {r['peak_MiB']:9.1f} MiB   saved for backward "
                  f"{r['saved_MiB']:8.1f} MiB", flush=True)

    def peaks(name):
        return [r["peak_MiB"] for r in rows if r["kernel"] == name]
    slopes = {n: round(loglog_slope(args.T, peaks(n)), 3) for n in names}
    # the exponent between the two largest T, where fixed buffers no longer dominate
    top = {n: round(loglog_slope(args.T[-2:], peaks(n)[-2:]), 3) for n in names} \
        if len(args.T) > 1 else slopes
    T_max = max(args.T)
    at_max = {r["kernel"]: r["peak_MiB"] for r in rows if r["T"] == T_max}
    ratio = at_max["ours"] / at_max["naive"]
    per_token = (peaks("ours")[-1] - peaks("ours")[0]) / (args.T[-1] - args.T[0]) * 2**10 \
        if len(args.T) > 1 else float("nan")
    print(f"\n{'T':>6}" + "".join(f"{n + ' MiB':>14}" for n in names))
    for T in args.T:
        print(f"{T:>6}" + "".join(f"{r['peak_MiB']:>14.1f}" for n in names
                                  for r in rows if r["kernel"] == n and r["T"] == T))
    print("slope of log(peak) vs log(T), all points: "
          + ", ".join(f"{n} {s:.2f}" for n, s in slopes.items())
          + f"; between T={args.T[-2]} and {args.T[-1]}: "
          + ", ".join(f"{n} {s:.2f}" for n, s in top.items()))
    print(f"ours: {per_token:.1f} KiB per extra token; at T={T_max} ours / naive = "
          f"{ratio:.4f} (1/{1 / ratio:.0f}; target <= 1/8)")

    # time
    q, k, v = inputs(B, H, args.time_T, hd, args.device)
    times = {n: median_time(kernel(n, args.block), q, k, v, args.repeats, args.device)
             for n in KERNELS}
    print(f"\nforward + backward at T={args.time_T}, median of {args.repeats}:")
    for n, s in times.items():
        print(f"  {n:<6} {s * 1e3:9.1f} ms   x sdpa {s / times['sdpa']:6.2f}")
    breakdown_all, wall = breakdown(kernel("ours", args.block), q, k, v)
    ops = breakdown_all[:7]
    print(f"where ours spends its time (torch.profiler, self CPU by op; wall {wall:.2f} s "
          "with the profiler on):")
    for r in ops:
        print(f"  {r['op']:<22} {r['calls']:>6} calls {r['self_ms']:>9.1f} ms  "
              f"{100 * r['share']:5.1f}%")
    n_tiles = sum(min(i + 1, math.ceil(args.time_T / args.block))
                  for i in range(math.ceil(args.time_T / args.block)))
    n_ops = sum(r["calls"] for r in breakdown_all)
    op_ms = sum(r["self_ms"] for r in breakdown_all)
    print(f"  {n_tiles} causal {args.block}x{args.block} tiles per pass (forward and backward "
          f"each), {n_ops} aten calls in all ({n_ops / (2 * n_tiles):.0f} per tile and pass): "
          f"{op_ms:.0f} ms inside ops, {times['ours'] * 1e3:.0f} ms wall without the "
          "profiler.\n  SDPA's CPU kernel does the tile's matmul, max, exp, sum and rescale "
          "in one pass over data in cache; ours writes each step's tile to memory and reads "
          "it back, and calls each op from Python.")

    tflops = gpu_tflops(args) if cuda else []
    summary = {"slopes": slopes, "slopes_top_two_T": top, "ours_over_naive_at_Tmax": round(ratio, 4), "T_max": T_max,
               "ours_KiB_per_token": round(per_token, 2),
               "time_T": args.time_T, "ms": {n: round(s * 1e3, 1) for n, s in times.items()},
               "ours_over_sdpa_time": round(times["ours"] / times["sdpa"], 2),
               "naive_over_sdpa_time": round(times["naive"] / times["sdpa"], 2)}
    target = slopes["ours"] < 1.2 and ratio <= 1 / 8
    path = save_benchmark("week08_flash_memory", {
        "config": {"batch": B, "heads": H, "head_dim": hd, "block": args.block,
                   "device": args.device, "threads": torch.get_num_threads()},
        "rows": rows, "time_breakdown": ops, "gpu_tflops": tflops, "summary": summary,
        # target: ours linear in T and <= 1/8 of naive's peak at the largest T
        "target_met": bool(target)})
    print(f"target met: {target}\nsaved {path}")


if __name__ == "__main__":
    main()
