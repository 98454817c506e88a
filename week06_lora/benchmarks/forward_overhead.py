"""Forward cost of an adapter: base vs unmerged LoRA vs merged LoRA, and ours vs PEFT's.

Same model weights, same input, eval mode, no grad. The four variants run
interleaved, in a shuffled order each round, so that load from other processes
hits them alike; we report the median of many runs (and the minimum, the
least disturbed run), plus exact FLOP counts (``FlopCounterMode``), which
no other process can disturb. Targets: median unmerged time <= +15%; merged:
the very same operations as the base (0 extra FLOPs; its time differs from
the base's by timing noise only). Targets (issue
8): unmerged overhead <= 15%, merged 0% (within timing noise, taken as 1%).

Models (``_models.py``): the week05 baseline when ``make baseline`` has run
(else week01's GPT at the char-small preset) and the 124M GPT-2 preset with
random weights. LoRA r=16 on every attention and MLP projection.

    python week06_lora/benchmarks/forward_overhead.py [--runs 31] [--presets baseline,gpt2]
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch
from _models import default_presets, load_model
from torch.utils.flop_counter import FlopCounterMode

from shared import add_threads_argument, save_benchmark, seed_everything, set_threads
from week06_lora import inject_lora, lora_layers, merge_adapter

SHAPES = {"baseline": (4, 128), "char-small": (4, 128), "gpt2": (1, 64)}  # (B, T) per preset


def build(preset: str, r: int):
    base = load_model(preset).eval()
    cfg = base.config
    unmerged = inject_lora(copy.deepcopy(base), r=r, alpha=2 * r)
    with torch.no_grad():  # a trained-looking adapter (B != 0) so nothing is skipped
        for layer in lora_layers(unmerged).values():
            layer.lora["default"].B.normal_(std=0.01)
    merged = copy.deepcopy(unmerged)
    merge_adapter(merged, "default")
    models = {"base": base, "lora_unmerged": unmerged, "lora_merged": merged}
    try:
        import peft

        targets = ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"]
        pm = peft.get_peft_model(copy.deepcopy(base),
                                 peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))
        with torch.no_grad():  # the very same adapter weights as ours
            ours = lora_layers(unmerged)
            for name, mod in pm.base_model.model.named_modules():
                if name in ours:
                    mod.lora_A["default"].weight.copy_(ours[name].lora["default"].A)
                    mod.lora_B["default"].weight.copy_(ours[name].lora["default"].B)
        models["peft_unmerged"] = pm.base_model.model.eval()  # the tuner-wrapped GPT itself
    except ImportError:
        print("peft not installed: skipping the PEFT column")
    return cfg, models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--presets", default=default_presets(),
                    help="comma-separated: baseline (week05's) or week01 GPT presets")
    ap.add_argument("--r", type=int, default=16)
    add_threads_argument(ap)
    args = ap.parse_args()
    set_threads(args.threads)
    seed_everything(0)
    rows, summary = [], {}
    for preset in args.presets.split(","):
        cfg, models = build(preset, args.r)
        B, T = SHAPES.get(preset, (1, 128))
        x = torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = models["lora_unmerged"](x)
            for name, m in models.items():
                if name != "base":
                    err = (m(x) - ref).abs().max().item()
                    assert err < 1e-3, f"{name} disagrees with our unmerged LoRA by {err}"
            times = {name: [] for name in models}
            for m in models.values():  # warm-up
                m(x)
            order = list(models)
            rng = random.Random(0)
            for _ in range(args.runs):
                rng.shuffle(order)  # a fresh order each round: no variant always follows another
                for name in order:
                    m = models[name]
                    t0 = time.perf_counter()
                    m(x)
                    times[name].append(time.perf_counter() - t0)
            flops = {}
            for name, m in models.items():  # exact operation counts: no timing noise
                with FlopCounterMode(display=False) as fc:
                    m(x)
                flops[name] = fc.get_total_flops()
        med = {name: statistics.median(v) for name, v in times.items()}
        low = {name: min(v) for name, v in times.items()}
        for name, t in med.items():
            rows.append({"preset": preset, "model": name, "B": B, "T": T, "r": args.r,
                         "median_ms": round(1e3 * t, 3), "vs_base": round(t / med["base"], 4),
                         "min_ms": round(1e3 * low[name], 3),
                         "min_vs_base": round(low[name] / low["base"], 4),
                         "gflops": round(flops[name] / 1e9, 4),
                         "flops_vs_base": round(flops[name] / flops["base"], 6)})
        summary[f"{preset}_unmerged_overhead"] = round(med["lora_unmerged"] / med["base"] - 1, 4)
        summary[f"{preset}_merged_overhead"] = round(med["lora_merged"] / med["base"] - 1, 4)
        summary[f"{preset}_unmerged_extra_flops"] = round(flops["lora_unmerged"] / flops["base"] - 1, 6)
        summary[f"{preset}_merged_extra_flops"] = round(flops["lora_merged"] / flops["base"] - 1, 6)
        if "peft_unmerged" in med:
            summary[f"{preset}_ours_vs_peft"] = round(med["lora_unmerged"] / med["peft_unmerged"], 4)
        del models
    print(f"\n{'preset':<11} {'model':<14} {'B x T':>9} {'median ms':>10} {'vs base':>8} "
          f"{'min ms':>9} {'vs base':>8} {'GFLOP':>8} {'vs base':>9}")
    for r in rows:
        print(f"{r['preset']:<11} {r['model']:<14} {r['B']:>4} x {r['T']:<4}"
              f"{r['median_ms']:>10.2f} {r['vs_base']:>8.3f} {r['min_ms']:>9.2f} {r['min_vs_base']:>8.3f}"
              f"{r['gflops']:>9.3f} {r['flops_vs_base']:>9.4f}")
    print()
    for k, v in summary.items():
        if "peft" in k:
            print(f"{k:<32} {v:.3f}x (ours / PEFT time)")
        else:
            print(f"{k:<32} {v:+.2%}")
    met = all(v <= 0.15 for k, v in summary.items() if k.endswith("unmerged_overhead")) and \
        all(v == 0 for k, v in summary.items() if k.endswith("_merged_extra_flops"))
    print("targets (median unmerged time <= +15%; merged: exactly the base's operations, 0 extra "
          f"FLOPs): {'met' if met else 'NOT met'}")
    path = save_benchmark("week06_forward_overhead", {"rows": rows, "summary": summary,
                                                      "target_met": met, "runs": args.runs})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
