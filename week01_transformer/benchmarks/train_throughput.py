"""Training-step throughput: our GPT (explicit and SDPA attention) vs Hugging Face GPT-2.

    python week01_transformer/benchmarks/train_throughput.py   (what `make week01-bench` runs)

All four systems get the same config, the same weights (ours are converted from
the Hugging Face model) and the same batches, and run forward + cross-entropy
+ backward in float32 on the CPU. They are measured in interleaved rounds in
one process, so a busy machine slows them alike, and the median round counts.
A float32 matmul measured in the same run gives the machine's peak FLOP/s;
model FLOP utilisation (MFU) is achieved model FLOP/s over that peak, with
training FLOPs per token = 6 * (12 L C^2 + V C) + 12 L T C (the matmuls of
the blocks and the head, forward and backward, plus attention's scores and
weighted sum; layer norms, softmax and GELU are not counted).

Target (issue 3): our SDPA path at least as fast as Hugging Face's default
(SDPA) attention.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel

from shared import add_threads_argument, save_benchmark, set_threads
from week01_transformer import GPT, GPTConfig
from week01_transformer.hf import hf_config

# ---------------------------------------------------------------- measuring


def matmul_peak(n: int = 1024, seconds: float = 1.5) -> float:
    """Best float32 matmul FLOP/s over repeated (n, n) @ (n, n) products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t))
    return best


def flops_per_token(c: GPTConfig, T: int) -> float:
    L, C, V = c.n_layer, c.n_embd, c.vocab_size
    return 6 * (12 * L * C * C + V * C) + 12 * L * T * C


def step_fn(name: str, model, x: torch.Tensor, y: torch.Tensor):
    """One forward + loss + backward for ``model``; returns a zero-argument callable."""
    if name.startswith("ours"):
        def step():
            model.zero_grad(set_to_none=True)
            model.loss(x, y).backward()
    else:
        def step():
            model.zero_grad(set_to_none=True)
            logits = model(x).logits  # (B, T, V)
            F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    return step


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per system per round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median counts)")
    add_threads_argument(ap, default=0)
    args = ap.parse_args(argv)
    set_threads(args.threads)

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=args.vocab_size, block_size=args.seq_len, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd)
    hf_sdpa = GPT2LMHeadModel(hf_config(config, attn_implementation="sdpa")).train()
    hf_eager = GPT2LMHeadModel(hf_config(config, attn_implementation="eager")).train()
    hf_eager.load_state_dict(hf_sdpa.state_dict())
    systems = {
        "ours-explicit": GPT.from_hf(hf_sdpa, attention="explicit").train(),
        "ours-sdpa": GPT.from_hf(hf_sdpa, attention="sdpa").train(),
        "hf-eager": hf_eager,
        "hf-sdpa": hf_sdpa,
    }
    B, T = args.batch_size, args.seq_len
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, config.vocab_size, (B, T), generator=g)
    y = torch.randint(0, config.vocab_size, (B, T), generator=g)
    steps = {name: step_fn(name, m, x, y) for name, m in systems.items()}

    print(f"config: L={config.n_layer} H={config.n_head} C={config.n_embd} V={config.vocab_size} "
          f"T={T} B={B}, {systems['ours-sdpa'].num_params():,} parameters, float32, "
          f"{torch.get_num_threads()} threads")
    peak = matmul_peak()
    print(f"measured float32 matmul peak: {peak / 1e9:.1f} GFLOP/s")

    for step in steps.values():  # warm-up: allocator, kernels' first-call costs
        step()
    times: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - t) / args.steps)
    peak_after = matmul_peak(seconds=0.5)
    peak = max(peak, peak_after)

    fpt = flops_per_token(config, T)
    rows = []
    for name, ts in times.items():
        sec = statistics.median(ts)
        tps = B * T / sec
        rows.append({"system": name, "ms_per_step": round(sec * 1e3, 2), "tokens_per_s": round(tps),
                     "mfu": round(tps * fpt / peak, 4)})
    by = {r["system"]: r for r in rows}
    ratio_sdpa = by["ours-sdpa"]["tokens_per_s"] / by["hf-sdpa"]["tokens_per_s"]
    ratio_eager = by["ours-explicit"]["tokens_per_s"] / by["hf-eager"]["tokens_per_s"]

    print(f"\n{'system':<15}{'ms/step':>10}{'tokens/s':>11}{'MFU':>8}")
    for r in rows:
        print(f"{r['system']:<15}{r['ms_per_step']:>10.1f}{r['tokens_per_s']:>11,}{r['mfu']:>8.1%}")
    print(f"\nours-sdpa / hf-sdpa      = {ratio_sdpa:.3f}x  (target >= 1.0)")
    print(f"ours-explicit / hf-eager = {ratio_eager:.3f}x")
    summary = {"ours_sdpa_over_hf_sdpa": round(ratio_sdpa, 4),
               "ours_explicit_over_hf_eager": round(ratio_eager, 4),
               "matmul_peak_gflops": round(peak / 1e9, 2),
               "flops_per_token": fpt, "threads": torch.get_num_threads(),
               "config": config.to_dict(), "batch_size": B}
    results = {"rows": rows, "summary": summary, "target_met": ratio_sdpa >= 1.0}
    path = save_benchmark("week01_train_throughput", results)
    print(f"saved {path}")
    return results


if __name__ == "__main__":
    main()
