"""The DPO stage: held-out measurements and the command ``python -m week09_alignment.dpo``.

- ``implicit_reward_accuracy(model, reference, pairs, tokenizer, beta)``: on
  held-out pairs, the fraction whose implicit reward ranks the chosen reply
  first and the mean margin (as TRL logs ``rewards/accuracies`` and
  ``rewards/margins``);
- ``verified_win_rate(model, tokenizer, pairs, is_correct, tools=...)``: greedy
  replies (week04's ``generate_with_tools``, week05's tools, batched) that a
  verifier accepts;
- ``verified_wins`` (per prompt), ``arithmetic_hits`` (per problem), their
  paired changes with bootstrap intervals;
- ``main(argv)``: the command (``week09_alignment.dpo`` runs it):

    python -m week09_alignment.dpo --preset tiny --out runs/week09-dpo
    python -m week09_alignment.dpo --preset gpu --init runs/week09-sft --out runs/week09-dpo \\
        --loss ipo --reference lora

Top to bottom: load the starting model (``--init``: a stage folder or
checkpoint; default ``runs/week09-sft`` when that stage exists, else
``auto``), draw synthetic preference pairs (``week09_alignment.prefs``:
train pairs and held-out test pairs on different problems; with ``--pairs
on_policy`` the training pairs are the model's own samples judged by the
verifier, ``onpolicy.on_policy_pairs``), build the
reference (copy / lora / precomputed), measure the held-out implicit-reward
accuracy and the verified win rate BEFORE, train through
``week09_alignment.common.run_stage`` (week03's Trainer: progress bar,
``<out>/train/metrics.jsonl`` with the DPO metrics each step, checkpoints in
``<out>/train/checkpoints``, a rerun resumes), measure AFTER, print both and
save them into ``<out>/stage.json``. With ``--reference lora`` the adapters
are merged into a plain copy of the model before it is saved, so the next
stage loads an ordinary checkpoint.

``stage.json`` also holds, before and after, week05's held-out arithmetic
exact match with the calculator (``tool_task("arithmetic", n_arith)`` through
``evaluate_generative(style="chat")``: the skill GRPO trains next), and under
``change`` the paired after - before change of the win rate and of that exact
match with a 95% bootstrap interval over the prompts (``grpo_train.bootstrap_ci``).

Presets (one code path): ``tiny`` (CPU) and ``gpu`` (more pairs, steps, rows
and tokens; not re-tuned here). ``tiny`` is synthetic pairs with RPO's NLL
term: 512 pairs, 150 steps of 8, lr 1e-4, beta 0.3, ``sft_weight`` 1.0. From
``runs/week09/sft`` (``OMP_NUM_THREADS=1 python -m week09_alignment.dpo --init
runs/week09/sft``, 1.5 min on 2 cores; one thread each when another job shares
the cores: two 2-thread jobs on 2 cores ran a step 10-20x slower) on 150
held-out pairs and 100 held-out arithmetic problems it reaches:

- implicit-reward accuracy 0 -> 0.77 (margin 0 -> 6.6): DPO learns to rank;
- verified win rate 0.547 -> 0.533, change -0.013 [-0.033, +0.000];
- arithmetic exact 0.90 -> 0.86, change -0.04 [-0.09, +0.01]

(replies of up to 64 new tokens, the forced tool output included; the first
tuning, at 40, cut many arithmetic answers short: 0.33 win rate, 0.70 exact).

What it does not reach: a better win rate. It keeps the replies about where
they were (plain DPO on these pairs at lr 5e-4 took the win rate 0.31 -> 0.02 on 48 pairs),
but the ranking it learns does not move greedy decoding; the fact third of
the prompts stays at 0 (the 128-token context cannot hold the search output)
and arithmetic may lose a few points. On-policy pairs (``--pairs on_policy``,
with and without the NLL term, sampled at T = 1 or 0.7, 4 or 8 samples, 256
or 512 prompts, all pairs or the sampled-correct-vs-wrong ones only) changed
the win rate by 0 to -0.17 on the tuning prompts; none improved it (at 64
tokens, the preset's settings on 372 on-policy pairs: win rate -0.027
[-0.060, 0], arithmetic 0.90 -> 0.80).

Left out: several sample-train rounds, UltraFeedback from the command line
(``prefs.load_ultrafeedback`` gives pairs in the same format for
``DPOLoss``), multi-GPU.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from week09_alignment.dpo import (
    LOSS_TYPES,
    PAIRS,
    REFERENCES,
    DPOConfig,
    DPOLoss,
    Reference,
    _chunks,
    _device,
    collate_pairs,
    encode_pair,
    precompute_reference,
)
from week09_alignment.logprobs import sequence_logprobs

# ---------------------------------------------------------------- evaluation


def implicit_reward_accuracy(model, reference, pairs: list[dict], tokenizer, beta: float,
                             block_size: int | None = None, batch_size: int = 32) -> dict:
    """On held-out ``pairs``: ``accuracy`` (fraction with beta * log-ratio of chosen >
    rejected: TRL's rewards/accuracies), ``margin`` (mean reward difference:
    rewards/margins) and ``logp_accuracy`` (fraction where the policy alone gives the
    chosen reply the higher log-prob; informative before training, when the rewards are 0).

    ``reference``: a ``Reference`` (precomputed: the pairs carry the log-probs) or a model.
    """
    if not isinstance(reference, Reference):
        reference = Reference("copy", reference)
    block_size = block_size or model.config.block_size
    was_training = model.training
    model.eval()
    cs, rs, rcs, rrs = [], [], [], []
    try:
        with torch.no_grad():
            for chunk in _chunks(list(pairs), batch_size):
                batch = collate_pairs(chunk, tokenizer, block_size, device=_device(model))
                c, r = sequence_logprobs(model, batch["ids"], batch["mask"]).chunk(2)
                rc, rr = reference.logps(model, batch)
                cs.append(c), rs.append(r), rcs.append(rc.to(c)), rrs.append(rr.to(c))
    finally:
        model.train(was_training)
    c, r, rc, rr = (torch.cat(x) for x in (cs, rs, rcs, rrs))  # (N,) each
    chosen_rewards, rejected_rewards = beta * (c - rc), beta * (r - rr)  # (N,) each
    return {"accuracy": (chosen_rewards > rejected_rewards).float().mean().item(),
            "margin": (chosen_rewards - rejected_rewards).mean().item(),
            "logp_accuracy": (c > r).float().mean().item(), "n": len(c)}


def verified_wins(model, tokenizer, pairs: list[dict], is_correct, tools: dict | None = None,
                  max_new_tokens: int = 48, batch_size: int = 32, seed: int = 0,
                  progress: bool = False) -> list[bool]:
    """Per held-out prompt, whether its greedy reply ``is_correct(pair, reply)`` accepts.
    Replies come from week04's ``generate_with_tools`` (batched, KV cache) with week05's
    ``default_tools(seed)`` unless ``tools`` is given; ``reply`` is
    ``ToolRun.answer(tokenizer)``, the model's own text after its last tool output."""
    from week04_modern_arch_tools import generate_with_tools

    if not pairs:
        raise ValueError("verified_win_rate needs at least one pair")
    if tools is None:
        from week05_eval.report import default_tools
        tools = default_tools(seed)
    was_training = model.training
    model.eval()
    wins = []
    try:
        for chunk in tqdm(list(_chunks(list(pairs), batch_size)), desc="win rate",
                          disable=not progress):
            runs = generate_with_tools(model, tokenizer, [list(p["prompt"]) for p in chunk], tools,
                                       max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)
            wins += [bool(is_correct(p, run.answer(tokenizer))) for p, run in zip(chunk, runs)]
    finally:
        model.train(was_training)
    return wins


def verified_win_rate(model, tokenizer, pairs: list[dict], is_correct, tools: dict | None = None,
                      max_new_tokens: int = 48, batch_size: int = 32, seed: int = 0,
                      progress: bool = False) -> float:
    """The fraction of held-out prompts whose greedy reply is correct (``verified_wins``)."""
    wins = verified_wins(model, tokenizer, pairs, is_correct, tools, max_new_tokens, batch_size,
                         seed, progress)
    return sum(wins) / len(wins)


def arithmetic_hits(model, tokenizer, n: int, tools: dict, max_new_tokens: int = 48,
                    batch_size: int = 32, seed: int = 0, progress: bool = False) -> list[bool]:
    """Per problem of week05's held-out ``tool_task("arithmetic", n)``: the greedy chat reply
    with the tools (``evaluate_generative(style="chat")``) matches the answer numerically."""
    from week05_eval.generative import evaluate_generative, score
    from week05_eval.tasks import tool_task

    task = tool_task("arithmetic", n=n, seed=seed, split="test")
    res = evaluate_generative(model, tokenizer, task, style="chat", tools=tools,
                              max_new_tokens=max_new_tokens, batch_size=batch_size,
                              seed=seed, progress=progress)
    return [bool(score(ex, p)) for ex, p in zip(task.examples, res.predictions)]


def _change(before: list[bool], after: list[bool], seed: int) -> dict:
    """Mean paired change after - before and its 95% bootstrap interval over the prompts."""
    from week09_alignment.grpo_train import bootstrap_ci

    deltas = [float(a) - float(b) for b, a in zip(before, after)]
    lo, hi = bootstrap_ci(deltas, seed=seed)
    return {"delta": sum(deltas) / len(deltas), "ci95": [lo, hi], "n": len(deltas)}


# ---------------------------------------------------------------- the command


PRESETS = {
    # tuned on 150 train-split prompts held out of training (see the module docstring)
    "tiny": DPOConfig(steps=150, batch_size=8, block_size=192, n_train=512, n_eval=150,
                      n_arith=100, max_new_tokens=64, lr=1e-4, beta=0.3, sft_weight=1.0,
                      eval_batch_size=48),
    "gpu": DPOConfig(steps=2000, batch_size=64, block_size=512, n_train=20000, n_eval=500,
                     max_new_tokens=128, lr=5e-5, warmup_steps=100, eval_batch_size=128),
}


def default_init() -> str:
    """``runs/week09-sft`` (under ``$NANOCHAT_RUNS``) when the SFT stage is there, else ``auto``."""
    from shared.metrics import runs_root

    sft = runs_root() / "week09-sft"
    return str(sft) if (sft / "model.safetensors").is_file() else "auto"


def merged_copy(model):
    """A copy of ``model`` with its active week06 adapters merged and every ``LoRALinear``
    replaced by a plain ``nn.Linear`` (what ``shared.load_model`` rebuilds)."""
    from week06_lora import lora_layers

    plain = copy.deepcopy(model)
    for name, layer in lora_layers(plain).items():
        for ad in layer.active:
            if ad not in layer.merged:
                layer.merge(ad)
        linear = torch.nn.Linear(layer.weight.shape[1], layer.weight.shape[0],
                                 bias=layer.bias is not None)
        linear.weight, linear.bias = layer.weight, layer.bias
        parent, _, child = name.rpartition(".")
        setattr(plain.get_submodule(parent) if parent else plain, child, linear)
    for p in plain.parameters():
        p.requires_grad_(True)
    return plain


def _figures(model, reference, held, tok, cfg: DPOConfig, block: int, tools, progress: bool):
    """(figures for stage.json, per-prompt win list, per-problem arithmetic hit list)."""
    from week09_alignment.prefs import is_correct

    acc = implicit_reward_accuracy(model, reference, held, tok, cfg.beta, block_size=block,
                                   batch_size=cfg.eval_batch_size)
    wins = verified_wins(model, tok, held, is_correct, tools=tools,
                         max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size,
                         seed=cfg.seed, progress=progress)
    hits = arithmetic_hits(model, tok, cfg.n_arith, tools, cfg.max_new_tokens,
                           cfg.eval_batch_size, cfg.seed, progress)
    return ({"implicit_reward_accuracy": acc["accuracy"], "reward_margin": acc["margin"],
             "logp_accuracy": acc["logp_accuracy"], "verified_win_rate": sum(wins) / len(wins),
             "arithmetic_exact": sum(hits) / len(hits), "n_eval": acc["n"],
             "n_arith": len(hits)}, wins, hits)


def run_dpo(cfg: DPOConfig, init: str, out: str | Path, device: str = "cpu",
            progress: bool = True) -> dict:
    """The whole stage (see the module docstring); returns what ``stage.json`` holds."""
    from shared import SampledBatches
    from week03_training import TrainConfig
    from week05_eval.report import default_tools
    from week06_lora import inject_lora
    from week09_alignment.common import load_start, read_stage, run_stage, save_stage
    from week09_alignment.prefs import preference_pairs

    out = Path(out)
    model, tok, desc = load_start(init, progress=progress)
    model.to(device)
    block = min(cfg.block_size, model.config.block_size)
    train = preference_pairs(cfg.n_train, cfg.seed, "train")
    held = preference_pairs(cfg.n_eval, cfg.seed, "test")
    tools = default_tools(cfg.seed)  # the world the fact pairs were drawn from
    counts = {}
    if cfg.pairs == "on_policy":  # the model's own replies, judged by the verifier
        from week09_alignment.onpolicy import on_policy_pairs
        train, counts = on_policy_pairs(model, tok, train, tools, samples=cfg.samples,
                                        max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                                        progress=progress)
        print(f"[dpo] {len(train)} on-policy pairs: {counts}", flush=True)
        if not train:
            raise ValueError("every sampled reply was correct: no on-policy pairs to learn from")
    if cfg.reference == "lora":
        inject_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha)  # freezes the base
    reference = Reference.make(cfg.reference, model)
    if cfg.reference == "precomputed":  # pi_ref = the starting model, scored once
        train = precompute_reference(model, train, tok, block, cfg.eval_batch_size, progress)
        held = precompute_reference(model, held, tok, block, cfg.eval_batch_size, progress)
    before, wins0, hits0 = _figures(model, reference, held, tok, cfg, block, tools, progress)
    print(f"[dpo] before: {before}", flush=True)

    encoded = [encode_pair(p, tok, block) for p in train]
    loader = SampledBatches(encoded, cfg.batch_size, lambda b: collate_pairs(b, tok, block),
                            seed=cfg.seed)
    tc = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, block_size=block, lr=cfg.lr,
                     warmup_steps=min(cfg.warmup_steps, cfg.steps - 1), weight_decay=0.0,
                     eval_every=0, ckpt_every=max(cfg.steps // 4, 1), device=device,
                     seed=cfg.seed, progress=progress, extra={"dpo": asdict(cfg)})
    model.train()
    run_stage(model, tok, loader, tc, out, loss_fn=DPOLoss(cfg, reference), desc="dpo",
              meta={"stage": "dpo", "init": desc})
    after, wins1, hits1 = _figures(model, reference, held, tok, cfg, block, tools, progress)
    change = {"verified_win_rate": _change(wins0, wins1, cfg.seed),
              "arithmetic_exact": _change(hits0, hits1, cfg.seed)}
    meta = {**read_stage(out), "config": asdict(cfg), "before": before, "after": after,
            "change": change, "pairs": {"n": len(train), **counts}}
    save_stage(out, merged_copy(model) if cfg.reference == "lora" else model, tok, meta)
    return meta


def _table(before: dict, after: dict, change: dict | None = None) -> str:
    change = change or {}
    rows = [("implicit-reward accuracy", "implicit_reward_accuracy"),
            ("reward margin", "reward_margin"), ("log-prob accuracy", "logp_accuracy"),
            ("verified win rate", "verified_win_rate"),
            (f"arithmetic exact ({after.get('n_arith', '?')})", "arithmetic_exact")]
    lines = [f"{'held-out (' + str(after['n_eval']) + ' pairs)':<28}{'before':>8}{'after':>8}"
             f"{'change [95% CI]':>26}"]
    for name, k in rows:
        line = f"{name:<28}{before[k]:>8.3f}{after[k]:>8.3f}"
        if k in change:
            c = change[k]
            line += f"{c['delta']:>+10.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m week09_alignment.dpo",
                                 description="DPO on synthetic preference pairs with a checkable "
                                             "winner; prints held-out figures before and after.")
    ap.add_argument("--init", default=None, help="stage folder or checkpoint to start from "
                    "(default: runs/week09-sft if present, else auto)")
    ap.add_argument("--out", default=None, help="stage folder (default: runs/week09-dpo)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--loss", choices=LOSS_TYPES, default="sigmoid")
    ap.add_argument("--reference", choices=REFERENCES, default="copy")
    ap.add_argument("--pairs", choices=PAIRS, default=None,
                    help="synthetic pairs, or the model's own samples judged by the verifier "
                         "(default: the preset's)")
    ap.add_argument("--beta", type=float, default=None)
    ap.add_argument("--label-smoothing", type=float, default=None, help="robust loss only")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-eval", type=int, default=None)
    ap.add_argument("--n-arith", type=int, default=None, help="held-out arithmetic problems")
    ap.add_argument("--sft-weight", type=float, default=None,
                    help="RPO: weight of the NLL on the chosen replies (0: plain DPO)")
    ap.add_argument("--samples", type=int, default=None, help="on_policy: samples per prompt")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from shared.metrics import runs_root

    over = {k: v for k, v in {"beta": args.beta, "steps": args.steps, "lr": args.lr,
                              "pairs": args.pairs,
                              "label_smoothing": args.label_smoothing, "n_train": args.n_train,
                              "n_eval": args.n_eval, "seed": args.seed,
                              "n_arith": args.n_arith, "sft_weight": args.sft_weight,
                              "samples": args.samples}.items() if v is not None}
    if args.loss == "robust" and "label_smoothing" not in over:
        over["label_smoothing"] = 0.1
    if args.reference == "lora" and "lr" not in over:  # adapters train at ~10x the full rate
        over["lr"] = PRESETS[args.preset].lr * 10     # (week06's LoRA vs full fine-tune runs)
    try:
        cfg = replace(PRESETS[args.preset], loss_type=args.loss, reference=args.reference, **over)
    except ValueError as e:
        ap.error(str(e))
    out = args.out or str(runs_root() / "week09-dpo")
    meta = run_dpo(cfg, args.init or default_init(), out, device=args.device,
                   progress=not args.no_progress)
    print(_table(meta["before"], meta["after"], meta.get("change")))
    print(f"[dpo] saved {Path(out) / 'stage.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
