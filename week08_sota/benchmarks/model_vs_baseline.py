"""The week's model (MLA + MoE) against week05's baseline at equal training FLOPs.

    python week08_sota/benchmarks/model_vs_baseline.py            # two ~10-minute CPU runs
    python week08_sota/benchmarks/model_vs_baseline.py --smoke    # the plumbing, seconds

Both go through week05's whole pipeline (``week05_eval.baseline.run_baseline``): the same
BPE tokenizer size, the same pydocs shards, a quarter of every batch week04's tool
conversations, week03's Trainer, week05's report card. The baseline is week05's ``cpu``
preset (week04's Llama, 4 layers x 128, ReLU^2, 400 steps). The challenger is the same
width and depth with MLA attention (d_c = 64, d_r = 16, no query latent) and, from layer 1
on, an MoE of 8 routed experts (top-2) plus 1 shared, each SwiGLU of width 112, so a token
runs about as many MLP weights as the dense model's (3 x 3 x 128 x 112 = 129k against
2 x 128 x 512 = 131k); the router balances with DeepSeek-V3's loss-free bias
(``balance_bias_hook``, gamma 1e-3) and no auxiliary loss. Its steps are set so both spend
the same training FLOPs (each model's ``flops_per_token``: 6 x active parameters plus the
attention term), at the same batch and learning-rate schedule.

The table: parameters (total and active), training FLOPs, steps, wall time, validation bits
per byte against the unigram baseline, the multiple-choice tasks and CORE, and the tool
tasks; saved as ``runs/bench/week08_model_vs_baseline.json``. Target: the week's model
reaches a validation bpb no worse than the baseline's (within 0.02) at equal FLOPs.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from shared import add_threads_argument, save_benchmark, set_threads
from week05_eval.baseline import PRESETS, BaselinePreset, run_baseline

SOTA_MODEL = dict(attn_type="mla", kv_lora_rank=64, q_lora_rank=0, qk_nope_head_dim=32,
                  qk_rope_head_dim=16, v_head_dim=32, moe=True, n_routed_experts=8,
                  n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=112,
                  first_k_dense_replace=1, gating="sigmoid", norm_topk_prob=True,
                  bias_update_speed=1e-3)


def sota_preset(base: BaselinePreset) -> BaselinePreset:
    """``base`` with week08's model (MLA + MoE) and its balancing hook."""
    model = {k: v for k, v in base.model.items() if k not in ("n_kv_head", "qk_norm")}
    return replace(base, model={**model, **SOTA_MODEL}, model_class="week08_sota.model:SotaModel",
                   hooks=("week08_sota.moe:balance_bias_hook",),
                   about=f"week08 MLA + MoE at the shape of: {base.about}")


def flops_per_token(preset: BaselinePreset, vocab_size: int) -> tuple[float, int, int]:
    """(training FLOPs per token, parameters, active parameters) of the preset's model."""
    from shared.checkpoint import resolve
    from week03_training.flops import flops_per_token as count

    cls = resolve(preset.model_class)
    model = cls(cls.config_class(vocab_size=vocab_size, **preset.model))
    total = sum(p.numel() for p in model.parameters())
    active = total
    if hasattr(model, "config") and getattr(model.config, "moe", False):
        from week08_sota.moe import active_param_count
        active = active_param_count(model)
    return count(model, preset.train["block_size"]), total, active


def summarise(name: str, s: dict, fpt: float, total: int, active: int) -> dict:
    mc = {r["task"]: r.get("acc_norm", r.get("acc")) for r in s["mc"]}
    gen = {}
    for r in s.get("gen", []):
        gen[r["task"]] = r.get("accuracy")
        if "accuracy_tools" in r:
            gen[f"{r['task']}+tools"] = r["accuracy_tools"]
    return dict(model=name, params=total, active_params=active, steps=s["steps"],
                train_flops=fpt * s["tokens_trained"], tokens=s["tokens_trained"],
                train_s=round(s["timings"]["train"], 1), val_bpb=round(s["val_bpb"], 4),
                unigram_bpb=round(s["unigram_bpb"], 4), core=s["core"], **mc, **gen)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="the smoke preset: seconds, measures nothing")
    ap.add_argument("--out", default="runs/week08-vs-baseline", help="where the two runs go")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_argument(ap)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    base = PRESETS["smoke" if args.smoke else "cpu"]
    sota = sota_preset(base)
    out = Path(args.out)
    fpt_base, n_base, _ = flops_per_token(base, base.vocab_size)
    fpt_sota, n_sota, act_sota = flops_per_token(sota, base.vocab_size)
    steps = max(1, round(base.train["steps"] * fpt_base / fpt_sota))
    sota = replace(sota, train={**sota.train, "steps": steps})
    print(f"training FLOPs per token: baseline {fpt_base:,.0f}, week08 {fpt_sota:,.0f} -> "
          f"week08 trains {steps} steps against the baseline's {base.train['steps']}")
    rows = []
    for name, preset, (fpt, total, active) in (
            ("week05 baseline (Llama)", base, (fpt_base, n_base, n_base)),
            ("week08 MLA + MoE", sota, (fpt_sota, n_sota, act_sota))):
        t0 = time.perf_counter()
        s = run_baseline(preset, out / ("baseline" if preset is base else "sota"),
                         progress=not args.quiet)
        rows.append(summarise(name, s, fpt, total, active))
        print(f"{name}: {time.perf_counter() - t0:.0f}s, val bpb {s['val_bpb']:.4f}")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k))
                                for k in keys) + " |")
    ratio = rows[1]["train_flops"] / rows[0]["train_flops"]
    met = rows[1]["val_bpb"] <= rows[0]["val_bpb"] + 0.02
    print(f"\ntraining FLOPs week08 / baseline: {ratio:.3f}; val bpb {rows[1]['val_bpb']:.4f} vs "
          f"{rows[0]['val_bpb']:.4f}: target {'met' if met else 'missed'}")
    if not args.smoke:
        path = save_benchmark("week08_model_vs_baseline", {
            "rows": rows, "flops_ratio": ratio, "threads": torch.get_num_threads(),
            "summary": {"baseline_bpb": rows[0]["val_bpb"], "week08_bpb": rows[1]["val_bpb"],
                        "flops_ratio": round(ratio, 3)},
            "target_met": bool(met)})
        print(f"saved {path}")
    (out / "table.json").write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
