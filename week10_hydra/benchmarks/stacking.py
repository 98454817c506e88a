"""Adapter stacking on two-skill tasks: base, A alone, B alone, A+B, LoraHub (ours and NGOpt).

    python week10_hydra/benchmarks/stacking.py            # the full run
    python week10_hydra/benchmarks/stacking.py --smoke    # a fast check that it runs

A tiny week04 Llama is trained on the world's capitals / currencies /
languages (one-word answers); adapter A learns the national animals
(one-word), adapter B the frame "It is <value>." on the base's facts; the
two-skill set asks the animals in B's frame (``week10_hydra.skills``).
LoraHub learns the (A, B) weights from ``--shots`` two-skill examples; every
row is scored on the other two-skill examples (and on A's and B's own sets):
exact match (week07's teacher-forced ``score_examples``) and mean loss.

Prints one markdown table and (not in a smoke run) saves the figures as
``runs/bench/week10_stacking.json`` (``shared.save_benchmark``). No target: the issue asks
for the measurement.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from shared import add_threads_argument, is_smoke, save_benchmark, set_threads
from week04_modern_arch_tools import Llama, LlamaConfig, fit_tokenizer, make_tool_dataset
from week07_continual import score_examples
from week10_hydra.compose import LoraHubConfig, combine, fewshot_losses, lorahub
from week10_hydra.skills import SkillsConfig, train_skill_adapters


def exact_match(bank, model, spec, examples) -> float:
    with bank.use([spec] * len(examples)):
        return score_examples(model, examples, "exact_match", batch_size=len(examples))


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny settings, seconds")
    ap.add_argument("--shots", type=int, default=8, help="two-skill examples LoraHub sees")
    ap.add_argument("--budget", type=int, default=40, help="LoraHub's objective evaluations")
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    add_threads_argument(ap)
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    smoke = args.smoke or is_smoke()
    progress = not args.no_progress
    cfg = SkillsConfig(seed=args.seed, progress=progress)
    if smoke:
        cfg = SkillsConfig(n_countries=12, base_steps=30, adapter_steps=20, seed=args.seed,
                           progress=progress)
        args.budget, args.embd = 16, 32
    t0 = time.perf_counter()
    convs = [c for kind in ("arithmetic", "string", "facts") for c in make_tool_dataset(kind, 80)]
    tok = fit_tokenizer(convs, vocab_size=400)
    torch.manual_seed(args.seed)
    model = Llama(LlamaConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=4, n_kv_head=2,
                              n_embd=args.embd, block_size=128))
    bank, tasks = train_skill_adapters(model, tok, cfg)
    train_s = time.perf_counter() - t0

    both = list(tasks.both.test)
    random.Random(args.seed).shuffle(both)
    shots, held = both[:args.shots], both[args.shots:]
    hub = {}
    for opt in ("cma", "ngopt"):
        hc = LoraHubConfig(budget=args.budget, optimizer=opt, seed=args.seed, progress=progress)
        t1 = time.perf_counter()
        hub[opt] = (lorahub(bank, model, ["A", "B"], shots, hc), time.perf_counter() - t1)
    combine(bank, "A+B", {"A": 1.0, "B": 1.0})

    rows = [("base", None), ("A alone (knowledge)", "A"), ("B alone (format)", "B"),
            ("uniform (0.5, 0.5)", {"A": 0.5, "B": 0.5}), ("A+B task arithmetic (1, 1)", "A+B")]
    for opt, label in (("cma", "LoraHub, our CMA-ES"), ("ngopt", "LoraHub, nevergrad NGOpt")):
        res, secs = hub[opt]
        w = res.weights
        rows.append((f"{label} ({w['A']:+.2f}, {w['B']:+.2f}), {secs:.1f} s", w))
    print(f"\n{len(tasks.knowledge.test)} animals, {len(tasks.format.test)} framed base facts, "
          f"{len(shots)} shots / {len(held)} held-out two-skill examples; training took "
          f"{train_s:.0f} s\n")
    print("| adapters | EM knowledge | EM format | EM two-skill (held out) | loss two-skill "
          "(held out) | few-shot objective |")
    print("|---|---|---|---|---|---|")
    out = []
    for label, spec in rows:
        stack = spec if isinstance(spec, dict) else ({"A": 1.0, "B": 1.0} if spec == "A+B"
                                                     else None)
        w = [stack.get("A", 0.0), stack.get("B", 0.0)] if stack else None
        obj = None
        if w is not None:
            fs = float(fewshot_losses(bank, model, ["A", "B"], [w], shots)[0])
            obj = fs + 0.05 * sum(abs(v) for v in w)
        row = {"adapters": label, "weights": w,
               "em_knowledge": exact_match(bank, model, spec, tasks.knowledge.test),
               "em_format": exact_match(bank, model, spec, tasks.format.test),
               "em_two_skill": exact_match(bank, model, spec, held),
               "loss_two_skill": _loss(bank, model, spec, held), "objective": obj}
        out.append(row)
        print(f"| {label} | {row['em_knowledge']:.2f} | {row['em_format']:.2f} | "
              f"{row['em_two_skill']:.2f} | {row['loss_two_skill']:.3f} | "
              f"{'' if obj is None else f'{obj:.3f}'} |")
    if not smoke:
        path = save_benchmark("week10_stacking", {
            "rows": out, "threads": threads, "train_s": train_s, "shots": len(shots),
            "held_out": len(held), "embd": args.embd, "budget": args.budget})
        print(f"saved {path}")
    return out


def _loss(bank, model, spec, examples) -> float:
    from week07_continual import collate, lm_loss

    x, y = collate(examples)
    with torch.no_grad(), bank.use([spec] * len(examples)):
        return float(lm_loss(model, x, y))


if __name__ == "__main__":
    main()
