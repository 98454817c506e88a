"""Full fine-tuning vs LoRA vs QLoRA: trainable parameters, memory, step time; ours vs PEFT.

For each model and method we build the model, run AdamW steps on random
tokens and report

- trainable parameters;
- model + optimizer memory: the bytes of every tensor that the training
  state holds after a step (weights as stored: fp32, or NF4 codes + constants
  for QLoRA; gradients; AdamW's two moments), counted once each. Activations
  are left out: they depend on batch size, not on the method;
- the median step time (forward, backward, AdamW);
- for QLoRA, the bytes of the quantised base weights vs the same weights in
  bf16 (target: <= 0.3x).

The last row per model times PEFT's LoRA (same targets, same rank) on the same
model, for ours-vs-PEFT. Models (``_models.py``): the week05 baseline when
``make baseline`` has run (else week01's GPT at the char-small preset) and the
124M GPT-2 preset with random weights.

    python week06_lora/benchmarks/memory_speed.py [--steps 3] [--presets baseline,gpt2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from _models import default_presets, load_model

from shared import add_threads_argument, save_benchmark, seed_everything, set_threads
from week06_lora import (
    QLoRALinear,
    base_weight_bytes,
    inject_lora,
    quantize_model,
    trainable_report,
)

SHAPES = {"baseline": (8, 128), "char-small": (8, 128), "gpt2": (1, 128)}  # (B, T)
TARGETS = ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"]


def state_bytes(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    seen: set[int] = set()

    def nbytes(tensors) -> int:
        total = 0
        for t in tensors:
            if t is None or not isinstance(t, torch.Tensor) or t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
        return total

    weights = nbytes(list(model.parameters()) + list(model.buffers()))
    grads = nbytes(p.grad for p in model.parameters())
    optim = nbytes(v for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim())
    return {"weights_mb": weights / 2**20, "grads_mb": grads / 2**20, "optimizer_mb": optim / 2**20,
            "total_mb": (weights + grads + optim) / 2**20}


def prepare(base: torch.nn.Module, method: str, r: int) -> torch.nn.Module:
    model = copy.deepcopy(base)
    if method == "full":
        return model
    if method == "qlora":
        quantize_model(model, targets=TARGETS)
    if method == "peft_lora":
        import peft

        return peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=2 * r,
                                                          target_modules=TARGETS)).base_model.model
    return inject_lora(model, targets=TARGETS, r=r, alpha=2 * r)


def measure(model: torch.nn.Module, x: torch.Tensor, steps: int) -> tuple[list[float], dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    times = []
    for i in range(steps + 1):  # step 0 warms up (allocations, AdamW state)
        t0 = time.perf_counter()
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x.roll(-1, 1).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return times, state_bytes(model, opt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--presets", default=default_presets(),
                    help="comma-separated: baseline (week05's) or week01 GPT presets")
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--methods", default="full,lora,qlora,peft_lora",
                    help="subset to run (a subset saves under week06_memory_speed_<methods>)")
    add_threads_argument(ap)
    args = ap.parse_args()
    set_threads(args.threads)
    seed_everything(0)
    rows, summary = [], {}
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in ("full", "lora", "qlora", "peft_lora")]
    if bad:
        raise SystemExit(f"unknown methods {bad}; valid: full, lora, qlora, peft_lora")
    try:
        import peft  # noqa: F401
    except ImportError:
        methods = [m for m in methods if m != "peft_lora"]
    for preset in args.presets.split(","):
        base = load_model(preset)
        B, T = SHAPES.get(preset, (1, 128))
        T = min(T, base.config.block_size)
        x = torch.randint(0, base.config.vocab_size, (B, T), generator=torch.Generator().manual_seed(0))
        for method in methods:
            model = prepare(base, method, args.r)
            model.train()
            rep = trainable_report(model)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            times, mem = measure(model, x, args.steps)
            row = {"preset": preset, "method": method, "trainable": trainable,
                   "total_params": rep.total, "step_s": round(statistics.median(times), 4),
                   **{k: round(v, 2) for k, v in mem.items()}}
            if method == "qlora":
                n = sum(m.quantized_numel for m in model.modules() if isinstance(m, QLoRALinear))
                row["base_ratio_vs_bf16"] = round(base_weight_bytes(model) / (2 * n), 4)
                summary[f"{preset}_qlora_base_vs_bf16"] = row["base_ratio_vs_bf16"]
            rows.append(row)
            print(f"{preset} {method}: step {row['step_s']:.3f}s, state {row['total_mb']:.1f} MB",
                  flush=True)
            del model
        by = {r["method"]: r for r in rows if r["preset"] == preset}
        for m in ("lora", "qlora"):
            if m in by and "full" in by:
                summary[f"{preset}_{m}_vs_full_memory"] = round(by[m]["total_mb"] / by["full"]["total_mb"], 4)
        if "peft_lora" in by and "lora" in by:
            summary[f"{preset}_ours_vs_peft_step"] = round(by["lora"]["step_s"] / by["peft_lora"]["step_s"], 4)
    print(f"\n{'preset':<11} {'method':<10} {'trainable':>12} {'weights MB':>11} {'grads MB':>9} "
          f"{'optim MB':>9} {'total MB':>9} {'step s':>8} {'NF4/bf16':>9}")
    for r in rows:
        print(f"{r['preset']:<11} {r['method']:<10} {r['trainable']:>12,} {r['weights_mb']:>11.1f} "
              f"{r['grads_mb']:>9.1f} {r['optimizer_mb']:>9.1f} {r['total_mb']:>9.1f} "
              f"{r['step_s']:>8.3f} {r.get('base_ratio_vs_bf16', ''):>9}")
    print()
    for k, v in summary.items():
        print(f"{k:<34} {v:.3f}x")
    ratios = [v for k, v in summary.items() if k.endswith("qlora_base_vs_bf16")]
    met = bool(ratios) and all(v <= 0.3 for v in ratios)
    verdict = ("met" if met else "NOT met") if ratios else "n/a (qlora not run)"
    print(f"target (QLoRA base weights <= 0.3x bf16 bytes): {verdict}")
    name = "week06_memory_speed"
    if args.methods != ap.get_default("methods"):
        name += "_" + "-".join(methods)
    path = save_benchmark(name, {"rows": rows, "summary": summary, "target_met": met,
                                                  "steps": args.steps})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
