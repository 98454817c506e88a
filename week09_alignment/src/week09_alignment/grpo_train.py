"""``python -m week09_alignment.grpo_train``: GRPO on a verifiable task, measured before and after.

    python -m week09_alignment.grpo_train --init runs/sft --out runs/grpo --preset tiny --kind arithmetic

1. load the starting model (``common.load_start``: an SFT stage folder, a
   checkpoint, ``auto`` or ``tiny``) and the RL prompts (``rewards.rl_prompts``,
   train split; the held-out test split is only evaluated);
2. measure on the held-out prompts: exact match (greedy) and pass@k with k = G
   (the unbiased estimator of Chen et al. 2021 from ``--eval-samples`` samples
   per prompt at the training temperature);
3. train with ``common.run_stage`` (week03's Trainer: resumable, tqdm,
   ``<out>/train/metrics.jsonl`` with reward_mean / reward_std / clip_ratio /
   kl per step for the dashboard's reward curve) over a ``RolloutLoader``;
4. measure again; the gains with 95% bootstrap intervals (over examples,
   paired) go into ``<out>/eval.json`` and ``stage.json``.

Presets: ``tiny`` (a few minutes on 2 CPU cores; ``NANOCHAT_SMOKE=1`` makes it
seconds) and ``gpu`` (the same code at a larger scale, CUDA and bf16).

Left out: LoRA training from the command (``grpo.LoraReference`` is the
reference for it), multi-GPU rollouts, a vLLM server.
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shared import is_smoke
from week03_training import TrainConfig
from week04_modern_arch_tools import generate_with_tools
from week09_alignment.common import load_start, run_stage, update_stage, write_json
from week09_alignment.grpo import GRPOConfig, GRPOLoss, RolloutLoader, frozen_reference
from week09_alignment.rewards import RL_KINDS, correctness, reward, rl_prompts


@dataclass
class Preset:
    grpo: GRPOConfig
    n_train: int = 200
    n_eval: int = 32
    eval_samples: int = 8       # samples per held-out prompt for pass@k (k = group_size)
    device: str = "cpu"
    dtype: str = "fp32"
    ckpt_every: int = 10


PRESETS = {
    "tiny": Preset(GRPOConfig(group_size=8, prompts_per_step=8, num_iterations=2, max_new_tokens=64,
                              lr=5e-5, steps=100), n_train=1000, n_eval=200),
    "gpu": Preset(GRPOConfig(group_size=8, prompts_per_step=32, num_iterations=1, max_new_tokens=128,
                             lr=1e-5, steps=300), n_train=4000, n_eval=200, eval_samples=16,
                  device="cuda", dtype="bf16", ckpt_every=50),
}


# ---------------------------------------------------------------- measuring


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. 2021: 1 - C(n - c, k) / C(n, k), the chance that k of n samples (c correct)
    hold a correct one."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def bootstrap_ci(deltas: list[float], n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``deltas`` (per-example after - before)."""
    rng = random.Random(seed)
    n = len(deltas)
    means = sorted(sum(deltas[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    return means[int(0.025 * n_boot)], means[int(0.975 * n_boot) - 1]


@torch.no_grad()
def evaluate(model, tok, examples: list[dict], tools: dict, cfg: GRPOConfig, samples: int,
             seed: int = 0, batch: int = 64, progress: bool = True) -> dict:
    """Per-example greedy correctness and pass@G from ``samples`` samples, and their means."""
    greedy, counts = [], []
    chunks = range(0, len(examples), max(1, batch // samples))
    for i in tqdm(chunks, desc="eval", disable=not progress, leave=False):
        part = examples[i:i + max(1, batch // samples)]
        runs = generate_with_tools(model, tok, [e["prompt"] for e in part], tools,
                                   max_new_tokens=cfg.max_new_tokens, temperature=0.0)
        greedy += [correctness(e, r, tok) for e, r in zip(part, runs)]
        runs = generate_with_tools(model, tok, [e["prompt"] for e in part for _ in range(samples)],
                                   tools, max_new_tokens=cfg.max_new_tokens,
                                   temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                                   seed=seed + i)
        for j in range(len(part)):
            counts.append(int(sum(correctness(part[j], r, tok) for r in runs[j * samples:(j + 1) * samples])))
    k = min(cfg.group_size, samples)
    passk = [pass_at_k(samples, c, k) for c in counts]
    return {"exact_match": sum(greedy) / len(greedy), f"pass@{k}": sum(passk) / len(passk),
            "per_example": {"exact_match": greedy, f"pass@{k}": passk}}


def gains(before: dict, after: dict) -> dict:
    out = {}
    for name, b in before["per_example"].items():
        d = [x - y for x, y in zip(after["per_example"][name], b)]
        lo, hi = bootstrap_ci(d)
        out[name] = {"before": before[name], "after": after[name], "gain": sum(d) / len(d),
                     "ci95": [lo, hi]}
    return out


# ---------------------------------------------------------------- the command


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m week09_alignment.grpo_train",
                                description="GRPO on a task with a checkable answer; held-out "
                                            "exact match and pass@k before and after.")
    p.add_argument("--init", default="auto", help="SFT stage folder, checkpoint, auto or tiny")
    p.add_argument("--out", required=True, help="stage folder to write (resumed if it has a run)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--kind", choices=RL_KINDS, default="arithmetic")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the preset's)")
    p.add_argument("--lr", type=float)
    p.add_argument("--group-size", type=int)
    p.add_argument("--prompts-per-step", type=int, help="prompts per rollout (x G completions)")
    p.add_argument("--num-iterations", type=int, help="mu: optimizer steps on one rollout")
    p.add_argument("--beta", type=float, help="KL coefficient (> 0 keeps a frozen reference)")
    p.add_argument("--loss-type", choices=("grpo", "bnpo", "dr_grpo", "dapo"))
    p.add_argument("--format-weight", type=float, default=0.0, help="weight of the format reward")
    p.add_argument("--device", help="cpu | cuda (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    pre = PRESETS[args.preset]
    over = {k: v for k, v in {"steps": args.steps, "lr": args.lr, "group_size": args.group_size,
                              "prompts_per_step": args.prompts_per_step,
                              "num_iterations": args.num_iterations,
                              "beta": args.beta, "loss_type": args.loss_type}.items() if v is not None}
    cfg = replace(pre.grpo, **over)
    n_train, n_eval, samples = pre.n_train, pre.n_eval, pre.eval_samples
    if is_smoke():
        cfg = replace(cfg, steps=min(cfg.steps, 2), max_new_tokens=min(cfg.max_new_tokens, 16))
        n_train, n_eval, samples = 16, 4, cfg.group_size
    device = args.device or pre.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda (the gpu preset) needs a GPU; use --preset tiny on a CPU")

    from week05_eval.report import default_tools
    from week09_alignment.rewards import RewardConfig
    model, tok, desc = load_start(args.init, progress=args.progress)
    model.to(device)
    tools = default_tools(args.seed)
    rcfg = RewardConfig(format=args.format_weight)
    train = rl_prompts(args.kind, n_train, seed=args.seed, split="train")
    test = rl_prompts(args.kind, n_eval, seed=args.seed, split="test")
    print(f"[grpo] start: {desc}; {len(train)} train / {len(test)} held-out {args.kind} prompts",
          flush=True)

    before = evaluate(model, tok, test, tools, cfg, samples, seed=args.seed, progress=args.progress)
    reference = frozen_reference(model) if cfg.beta > 0 else None
    loader = RolloutLoader(model, tok, train, cfg, tools, seed=args.seed, reference=reference,
                           reward_fn=lambda ex, run: reward(ex, run, tok, rcfg))
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.group_size * cfg.prompts_per_step,
                       block_size=model.config.block_size, lr=cfg.lr, weight_decay=0.0,
                       schedule="constant", warmup_steps=0, grad_clip=1.0, device=device,
                       dtype=pre.dtype, eval_every=0, ckpt_every=pre.ckpt_every, seed=args.seed,
                       optimizer="torch-adamw", progress=args.progress,
                       extra={"grpo": asdict(cfg), "kind": args.kind, "init": str(args.init)})
    meta = {"stage": "grpo", "init": desc, "kind": args.kind, "grpo": asdict(cfg)}
    run_stage(model, tok, loader, tcfg, args.out, loss_fn=GRPOLoss(cfg, reference),
              desc="grpo", meta=meta)
    after = evaluate(model, tok, test, tools, cfg, samples, seed=args.seed, progress=args.progress)

    result = {"kind": args.kind, "n_eval": len(test), "samples": samples, **gains(before, after)}
    out = Path(args.out)
    write_json(out / "eval.json", result)
    update_stage(out, eval=result)
    for name in before["per_example"]:
        r = result[name]
        print(f"[grpo] {name:12s} {r['before']:.3f} -> {r['after']:.3f}  gain {r['gain']:+.3f} "
              f"(95% CI {r['ci95'][0]:+.3f} .. {r['ci95'][1]:+.3f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
