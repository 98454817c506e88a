"""KV-cache size and decode speed: multi-head, grouped-query, multi-query and latent attention.

    python week08_sota/benchmarks/kv_cache.py            # 1k, 4k and 16k tokens of context
    python week08_sota/benchmarks/kv_cache.py --quick    # 256 and 1k: a smoke run
    python week08_sota/benchmarks/kv_cache.py --attention explicit   # matmul + softmax kernel

Part 1, cache bytes per token (formulas, checked against the caches' own ``nbytes()``):
MHA, GQA (2 kv heads), MQA and MLA at one model size, nanochat's d20 width (20 layers,
10 heads of 128; MLA as the ``d20-mla-moe`` preset: d_c = 512, d_r = 64), in bf16; then
DeepSeek-V2's own configuration worked out: 128 heads of 128 would cache 2 * 128 * 128 =
32,768 numbers per token per layer, MLA caches d_c + d_r = 512 + 64 = 576 (56.9x fewer).

Part 2, decode at 1k, 4k and 16k tokens of context, one run, with each ``--attention``
kernel (default SDPA and week01's explicit matmul + softmax): a small random model (2
layers, width 256, 8 heads of 32, vocab 512; on this CPU a larger one would not hold a
16k cache in reasonable time) in four variants of its attention: MHA (8 kv heads), GQA
(2 kv heads), MLA naive and MLA absorbed (d_c = 128, d_r = 16, no query latent). For
each context the cache is filled with random entries up to that length (decode speed does
not depend on what is cached; a 16k prefill would dominate a CPU run), then ``--steps``
one-token steps (batch 1) run through ``SotaModel.step``, after 2 warm-up steps; the best
of ``--repeats`` rounds is reported as tokens/s. Peak memory: the growth of the process's
peak resident set (Linux ``VmHWM`` in ``/proc/self/status``, reset with ``clear_refs``)
from just before the cache is made to the end of the steps, so it holds the cache and the
steps' temporaries (the naive path's decompressed keys and values); freed memory is
handed back first (glibc ``malloc_trim``), still a coarse figure below a few MiB. ``torch`` keeps no
allocator statistics on a CPU and ``tracemalloc`` does not see its tensors, hence RSS.

Targets: MLA's cache is d_c + d_r numbers per token per layer (the formula equals the
cache's bytes), DeepSeek-V2's figures are 576 and 32,768, and at the longest context the
absorbed path is faster than the naive one and holds less memory than MHA.
"""

from __future__ import annotations

import argparse
import gc
import re
import time
from pathlib import Path

import torch

from shared import add_threads_argument, save_benchmark, set_threads
from week01_transformer import KVCache
from week08_sota.config import SotaConfig
from week08_sota.mla import LatentCache
from week08_sota.model import SotaModel

# ---------------------------------------------------------------- part 1: bytes per token


def per_token(config: SotaConfig) -> int:
    """Numbers cached per token per layer: 2 * n_kv_head * head_dim, or d_c + d_r for MLA."""
    if config.attn_type == "mla":
        return config.kv_lora_rank + config.qk_rope_head_dim
    return 2 * config.n_kv_head * config.head_dim


def measured_per_token(config: SotaConfig, T: int = 8) -> float:
    """The same from a real cache of ``T`` tokens (bf16), divided by layers and tokens."""
    if config.attn_type == "mla":
        cache = LatentCache(config.n_layer, 1, config.kv_lora_rank, config.qk_rope_head_dim, T,
                            dtype=torch.bfloat16)
    else:
        cache = KVCache(config.n_layer, 1, config.n_kv_head, config.head_dim, T,
                        dtype=torch.bfloat16)
    return cache.nbytes() / 2 / config.n_layer / T


def bytes_table() -> tuple[list[dict], dict]:
    d20 = dict(n_layer=20, n_embd=1280, n_head=10, moe=False, vocab_size=65536)
    systems = {
        "MHA (10 kv heads)": SotaConfig(attn_type="gqa", n_kv_head=10, **d20),
        "GQA (2 kv heads)": SotaConfig(attn_type="gqa", n_kv_head=2, **d20),
        "MQA (1 kv head)": SotaConfig(attn_type="gqa", n_kv_head=1, **d20),
        "MLA (d20-mla-moe)": SotaConfig.preset("d20-mla-moe", moe=False),
    }
    rows = []
    mha = per_token(systems["MHA (10 kv heads)"])
    for name, c in systems.items():
        n = per_token(c)
        assert measured_per_token(c) == n, name  # the formula is what the cache holds
        rows.append({"system": name, "elements_per_token_layer": n,
                     "bytes_per_token_bf16": n * c.n_layer * 2,
                     "kib_per_1k_tokens_bf16": round(n * c.n_layer * 2 * 1024 / 1024, 1),
                     "vs_mha": round(mha / n, 2)})
    # DeepSeek-V2 (arXiv:2405.04434): 60 layers, 128 heads of 128, d_c = 512, d_r = 64
    v2 = SotaConfig(vocab_size=102400, block_size=4096, n_layer=60, n_head=128, n_embd=5120,
                    intermediate_size=12288, kv_lora_rank=512, q_lora_rank=1536,
                    qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, moe=False)
    v2_mha = 2 * v2.n_head * v2.qk_nope_head_dim  # its MHA equivalent: 128 heads of 128
    deepseek = {"mla_elements_per_token_layer": v2.latent_cache_elements(),
                "mha_elements_per_token_layer": v2_mha,
                "ratio": round(v2_mha / v2.latent_cache_elements(), 1),
                "mla_kib_per_token_bf16": round(v2.latent_cache_elements() * 60 * 2 / 1024, 1),
                "mha_kib_per_token_bf16": round(v2_mha * 60 * 2 / 1024, 1)}
    return rows, deepseek


# ---------------------------------------------------------------- part 2: decode


def _status(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) * 1024
    except (OSError, AttributeError):
        return None


def _trim() -> None:
    """Hand freed heap memory back to the OS (glibc), so the next allocation shows in RSS."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def small_model(kind: str, block_size: int, attention: str = "sdpa") -> SotaModel:
    base = dict(vocab_size=512, block_size=block_size, n_layer=2, n_embd=256, n_head=8,
                intermediate_size=512, moe=False, attention=attention)
    if kind == "MHA":
        c = SotaConfig(attn_type="gqa", n_kv_head=8, **base)
    elif kind == "GQA":
        c = SotaConfig(attn_type="gqa", n_kv_head=2, **base)
    else:
        c = SotaConfig(attn_type="mla", kv_lora_rank=128, q_lora_rank=0, qk_nope_head_dim=32,
                       qk_rope_head_dim=16, v_head_dim=32, mla_absorb=kind == "MLA absorbed",
                       **base)
    torch.manual_seed(0)
    return SotaModel(c).eval()


def decode_row(model: SotaModel, kind: str, context: int, args) -> dict:
    gc.collect()
    _trim()
    before = _status("VmRSS")
    tracked = _reset_peak() and before is not None
    cache = model.new_cache(1, context + args.steps + 2)
    store = cache.kv if isinstance(cache, LatentCache) else None
    with torch.no_grad():
        if store is not None:
            store.normal_()
        else:
            cache.k.normal_()
            cache.v.normal_()
        tok = torch.randint(0, 512, (1, 1))
        best = float("inf")
        for _ in range(args.repeats):
            cache.pos = context
            model.step(tok, cache)  # warm-up
            model.step(tok, cache)
            cache.pos = context
            t0 = time.perf_counter()
            for _ in range(args.steps):
                logits = model.step(tok, cache)
            best = min(best, time.perf_counter() - t0)
        assert torch.isfinite(logits).all()
    peak = _status("VmHWM") - before if tracked else None
    row = {"system": kind, "context": context, "tokens_per_s": round(args.steps / best, 1),
           "cache_mib": round(cache.nbytes() / 2**20, 2),
           "elements_per_token_layer": per_token(model.config),
           "peak_mib": None if peak is None else round(peak / 2**20, 1)}
    del cache, store
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contexts", default="1024,4096,16384",
                   help="comma-separated context lengths (tokens already in the cache)")
    p.add_argument("--quick", action="store_true", help="contexts 256,1024, 8 steps, 1 round")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--attention", default="sdpa,explicit",
                   help="comma-separated registered attention kernels; every variant runs each")
    add_threads_argument(p)
    args = p.parse_args()
    if args.quick:
        args.contexts, args.steps, args.repeats = "256,1024", 8, 1
    set_threads(args.threads)
    contexts = [int(v) for v in args.contexts.split(",")]

    rows, deepseek = bytes_table()
    print("KV cache per token, nanochat d20 size (20 layers, 10 heads of 128), bf16")
    print(f"{'system':<20} {'numbers/token/layer':>20} {'bytes/token':>12} {'vs MHA':>7}")
    for r in rows:
        print(f"{r['system']:<20} {r['elements_per_token_layer']:>20,} "
              f"{r['bytes_per_token_bf16']:>12,} {r['vs_mha']:>6.2f}x")
    print(f"\nDeepSeek-V2 (60 layers, 128 heads): MLA caches 512 + 64 = "
          f"{deepseek['mla_elements_per_token_layer']} numbers per token per layer; its MHA "
          f"equivalent 2 * 128 * 128 = {deepseek['mha_elements_per_token_layer']:,} "
          f"({deepseek['ratio']}x more); per token over 60 layers in bf16: "
          f"{deepseek['mla_kib_per_token_bf16']} KiB vs {deepseek['mha_kib_per_token_bf16']} KiB")

    kernels = args.attention.split(",")
    print(f"\ndecode, batch 1, {torch.get_num_threads()} thread(s), {args.steps} steps, best of "
          f"{args.repeats}; 2 layers, width 256, 8 heads of 32; kernels {', '.join(kernels)}")
    decode_rows = []
    kinds = ("MHA", "GQA", "MLA naive", "MLA absorbed")
    for kernel in kernels:
        models = {k: small_model(k, max(contexts) + args.steps + 2, kernel) for k in kinds}
        for context in contexts:
            for kind in kinds:
                decode_rows.append({"kernel": kernel,
                                    **decode_row(models[kind], kind, context, args)})
        del models
    print(f"{'kernel':<9} {'system':<14} {'context':>8} {'tokens/s':>9} {'cache MiB':>10} "
          f"{'peak MiB':>9}")
    for r in decode_rows:
        peak = "n/a" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}"
        print(f"{r['kernel']:<9} {r['system']:<14} {r['context']:>8} {r['tokens_per_s']:>9.1f} "
              f"{r['cache_mib']:>10.2f} {peak:>9}")

    summary = {"deepseek_v2_ratio": deepseek["ratio"]}
    target = (deepseek["mla_elements_per_token_layer"] == 576
              and deepseek["mha_elements_per_token_layer"] == 32768)
    for kernel in kernels:
        longest = {r["system"]: r for r in decode_rows
                   if r["context"] == max(contexts) and r["kernel"] == kernel}
        absorbed, naive, mha = longest["MLA absorbed"], longest["MLA naive"], longest["MHA"]
        summary[f"{kernel}_absorbed_vs_naive_speed"] = round(
            absorbed["tokens_per_s"] / naive["tokens_per_s"], 2)
        summary[f"{kernel}_absorbed_vs_mha_speed"] = round(
            absorbed["tokens_per_s"] / mha["tokens_per_s"], 2)
        memory_ok = absorbed["peak_mib"] is None or absorbed["peak_mib"] < mha["peak_mib"]
        target = target and absorbed["tokens_per_s"] > naive["tokens_per_s"] and memory_ok
        print(f"\n{kernel}, at {max(contexts)} tokens: absorbed "
              f"{summary[kernel + '_absorbed_vs_naive_speed']:.2f}x the naive path's speed, "
              f"{summary[kernel + '_absorbed_vs_mha_speed']:.2f}x MHA's; peak MiB absorbed "
              f"{absorbed['peak_mib']} vs MHA {mha['peak_mib']}")
    summary["mha_vs_mla_cache"] = round(mha["cache_mib"] / absorbed["cache_mib"], 2)
    print(f"MHA's cache is {summary['mha_vs_mla_cache']:.2f}x MLA's at every length")
    print(f"target (576 vs 32,768; with every kernel, absorbed faster than naive and lighter "
          f"than MHA at the longest context): {'met' if target else 'NOT met'}")
    path = save_benchmark("week08_kv_cache", {
        "config": vars(args), "threads": torch.get_num_threads(), "bytes_rows": rows,
        "deepseek_v2": deepseek, "rows": decode_rows, "summary": summary,
        "memory_method": "peak RSS growth (VmHWM after clear_refs) over cache + steps",
        "target_met": bool(target)})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
