"""Router accuracy, and what routing errors cost, on week07's streams: prototypes vs Arrow.

    python week10_hydra/benchmarks/routing.py                     # facts, domains, tools
    python week10_hydra/benchmarks/routing.py --streams skills-facts,domains
    python week10_hydra/benchmarks/routing.py --smoke             # seconds: a random tiny base

For each stream (week07's ``skills-facts``, ``domains`` and the tool-use
``skills``, with week07's benchmark settings ``week07_continual.run.bench_settings``):
one LoRA adapter per task is trained on week07's tiny base (``load_base``,
week07's ``train_task``: r=16, alpha=32, every projection and the output head),
all adapters are loaded into one ``AdapterBank``, and

- the prototype router (``PrototypeRouting``, fitted on ``--n-fit`` training
  prompts per task) and Arrow's per-request choice (largest mean routing weight
  over the prompt's tokens and all layers) route each task's held-out test
  prompts (test examples not used to fit; the facts tasks test on the facts
  they taught, so this leaves the fitted ones out);
- the stream's metric (exact match, or bits per byte for ``domains``: lower is
  better) on those same examples with: the oracle (each example's own
  adapter), the prototype router's pick, Arrow per token (what the bank
  serves for "arrow" rows), Arrow's per-request choice, and the bare base.

Prints a markdown table and saves the figures with ``shared.save_benchmark``
(``runs/bench/week10_routing.json``; not with ``--smoke``).

Measured (2026-12-01, 2 shared CPU cores, ``--threads 1``, week07's cached tiny base,
default flags, 474 s)::

  stream        metric  held-out  proto acc  arrow acc  oracle  proto  arrow tok  arrow pick  base
  skills-facts  EM %    64        100.0      23.4       100.0   100.0  1.6        23.4        0.0
  domains       bpb     96        50.0       24.0       2.851   3.065  2.945      3.294       2.739
  skills        EM %    106       85.8       61.3       25.0    25.0   0.0        1.6         0.0

Read: the prototype router finds every held-out fact question's task and so loses
nothing against the oracle; Arrow's per-request choice is at chance (25%) there, and
per-token Arrow mixes the fact adapters into 1.6% exact match: prototypes of weight
space (which input direction an adapter amplifies most) say little about which task a
prompt belongs to, the base's hidden states say a lot. On ``domains`` 40 steps on 48
windows overfit the tiny base (the oracle adapter is worse than the bare base on held-out
documents), so there every routed policy loses to the base and misrouting (50%) costs
another 0.21 bpb.

Left out: tuning Arrow's top_k / temperature (one setting, ``--top-k``), and
the tool-use stream's decoding with tools (exact match is week07's
teacher-forced score, equal to greedy decoding).
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from shared import add_threads_argument, is_smoke, save_benchmark, set_threads
from week06_lora import default_targets, inject_lora, lora_layers, set_active_adapters
from week07_continual import make_domains_stream, make_skills_stream, train_task
from week07_continual.run import bench_settings
from week10_hydra.bank import AdapterBank, ArrowSpec
from week10_hydra.routing import router_accuracy, score_routed

STREAMS = ("skills-facts", "domains", "skills")

# ---------------------------------------------------------------- settings


@dataclass
class BenchConfig:
    streams: tuple[str, ...] = STREAMS
    model: str = "tiny"  # week07 load_base: auto / baseline / tiny / a checkpoint path
    n_fit: int = 24  # router prompts per task (week07's benchmark: 24)
    lora_r: int = 16
    lora_alpha: float = 32.0
    top_k: int = 2
    temperature: float = 1.0
    steps: int = 0  # 0: week07's bench_settings per stream
    smoke: bool = False
    seed: int = 0


def _stream(name: str, tok, smoke: bool):
    _, n_train, n_test = bench_settings("skills" if name == "skills" else name)
    if smoke:
        n_train, n_test = 12, 8
    if name == "skills-facts":
        return make_skills_stream(tok, variant="facts", n_facts=16 if smoke else 40)
    if name == "skills":
        return make_skills_stream(tok, n_train, n_test, variant="tools",
                                  n_facts=16 if smoke else 40)
    if name == "domains":
        return make_domains_stream(tok, n_train=n_train, n_test=n_test)
    raise ValueError(f"unknown stream {name!r}; valid: {', '.join(STREAMS)}")


def _base(cfg: BenchConfig, progress: bool):
    if cfg.smoke:  # hermetic and fast: a random tiny week04 Llama and a small week04 tokenizer
        from week04_modern_arch_tools import Llama, LlamaConfig, fit_tokenizer, make_tool_dataset

        convs = [c for k in ("arithmetic", "string", "facts") for c in make_tool_dataset(k, 40)]
        tok = fit_tokenizer(convs, vocab_size=400)
        torch.manual_seed(cfg.seed)
        model = Llama(LlamaConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=4, n_kv_head=2,
                                  n_embd=32, block_size=256))
        return model.eval(), tok, "random tiny Llama (smoke)"
    from week07_continual.models import load_base

    model, tok, desc = load_base(cfg.model, progress=progress)
    return model.eval(), tok, desc


# ---------------------------------------------------------------- one stream


def measure_stream(base, tok, name: str, cfg: BenchConfig, progress: bool = True) -> dict:
    """Train an adapter per task, route the held-out prompts both ways, score every policy."""
    t0 = time.perf_counter()
    stream = _stream(name, tok, cfg.smoke)
    tc, _, _ = bench_settings("skills" if name == "skills" else name)
    tc.steps_per_task = 3 if cfg.smoke else (cfg.steps or tc.steps_per_task)
    tc.seed = cfg.seed
    tc.max_len = getattr(getattr(base, "config", None), "block_size", None)  # crop long chats
    names = stream.task_names
    model = copy.deepcopy(base)
    targets = default_targets(model) + (["lm_head"] if hasattr(model, "lm_head") else [])
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    for task in stream.tasks:
        inject_lora(model, targets=targets, r=cfg.lora_r, alpha=cfg.lora_alpha, adapter=task.name)
        train_task(model, task, tc, rng, lr=tc.lora_lr, progress=progress,
                   desc=f"{name}: {task.name}")
    set_active_adapters(model, [])
    served = copy.deepcopy(base).eval()
    bank = AdapterBank(served, targets=list(lora_layers(model)))
    for n in names:
        bank.add_from_model(n, model)
    spec = ArrowSpec(names, top_k=min(cfg.top_k, len(names)), temperature=cfg.temperature)
    n_fit = min(cfg.n_fit, 6) if cfg.smoke else cfg.n_fit
    acc = router_accuracy(served, stream, n_fit, names, bank=bank, arrow=spec, seed=cfg.seed)
    token_bytes = None
    if stream.metric == "bpb":
        from week02_bpe import token_bytes as tb

        token_bytes = tb(tok)
    scores = {k: [] for k in ("oracle", "prototype", "arrow", "arrow_choice", "base")}
    for task in stream.tasks:
        exs = [task.test[j] for j in acc.held_out[task.name]]
        routes = acc.routes[task.name]
        rows = {"oracle": [task.name] * len(exs), "prototype": routes["prototype"],
                "arrow": ["arrow"] * len(exs), "arrow_choice": routes["arrow"],
                "base": [None] * len(exs)}
        for k, r in rows.items():
            scores[k].append(score_routed(bank, exs, stream.metric, r, spec,
                                          token_bytes=token_bytes, max_len=tc.max_len))
    mean = {k: sum(v) / len(v) for k, v in scores.items()}  # the mean over tasks (week07's ACC)
    return {"stream": stream.name, "metric": stream.metric, "tasks": len(names),
            "held_out": sum(len(v) for v in acc.held_out.values()),
            "steps_per_task": tc.steps_per_task, "proto_acc": acc.prototype,
            "arrow_acc": acc.arrow, **mean, "per_task": acc.per_task,
            "per_task_scores": scores, "wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------- the table


def table(rows: list[dict]) -> str:
    head = ("| stream | metric | tasks | held-out | proto acc | arrow acc | oracle | prototype "
            "| arrow (token) | arrow choice | base | wall_s |")
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        pct = r["metric"] == "exact_match"

        def f(v, pct=pct):
            return f"{100 * v:.1f}" if pct else f"{v:.3f}"

        lines.append(f"| {r['stream']} | {'EM %' if pct else 'bpb'} | {r['tasks']} | "
                     f"{r['held_out']} | {100 * r['proto_acc']:.1f} | {100 * r['arrow_acc']:.1f} | "
                     f"{f(r['oracle'])} | {f(r['prototype'])} | {f(r['arrow'])} | "
                     f"{f(r['arrow_choice'])} | {f(r['base'])} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", default=",".join(STREAMS),
                   help=f"comma-separated, from {', '.join(STREAMS)}")
    p.add_argument("--model", default="tiny", help="week07 load_base: auto/baseline/tiny/path")
    p.add_argument("--n-fit", type=int, default=24, help="router prompts per task")
    p.add_argument("--top-k", type=int, default=2, help="Arrow's top_k")
    p.add_argument("--steps", type=int, default=0, help="steps per task (0: week07's settings)")
    p.add_argument("--smoke", action="store_true", help="a random tiny base, 3 steps: seconds")
    p.add_argument("--no-progress", action="store_true")
    add_threads_argument(p)
    a = p.parse_args(argv)
    streams = tuple(s.strip() for s in a.streams.split(",") if s.strip())
    bad = [s for s in streams if s not in STREAMS]
    if bad or not streams:
        p.error(f"unknown stream(s) {bad}; valid: {', '.join(STREAMS)}")
    set_threads(a.threads)
    cfg = BenchConfig(streams, a.model, a.n_fit, top_k=a.top_k, steps=a.steps,
                      smoke=a.smoke or is_smoke())
    base, tok, desc = _base(cfg, not a.no_progress)
    rows = [measure_stream(base, tok, s, cfg, not a.no_progress)
            for s in tqdm(streams, desc="streams", disable=a.no_progress)]
    n_fit = min(cfg.n_fit, 6) if cfg.smoke else cfg.n_fit
    print(f"base: {desc}; Arrow top_k={cfg.top_k}, temperature={cfg.temperature}; "
          f"{n_fit} router prompts per task; scores on the held-out test prompts, "
          "mean over tasks (EM: higher is better, bpb: lower)\n")
    print(table(rows))
    if not cfg.smoke:
        path = save_benchmark("week10_routing", {"rows": rows, "config": asdict(cfg),
                                                 "base": desc})
        print(f"\nsaved {path}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
