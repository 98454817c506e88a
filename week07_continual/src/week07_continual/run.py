"""Command line: run strategies over a task stream and print the accuracy matrix and the table.

    python -m week07_continual.run --stream skills --strategy naive,lora
    python -m week07_continual.run --stream domains --strategy ewc+replay --model tiny
    python -m week07_continual.run --stream path/to/folder --strategy replay --smoke

``--stream``: ``skills``, ``skills-facts``, ``domains`` or a folder of ``<task>.jsonl`` files;
``--strategy``: one or more (comma-separated) of naive, ewc, online-ewc,
replay, lora, shared joined with ``+`` (``ewc+replay``, ``lora+replay``,
``ewc+replay+shared``); ``--separate`` adds the reference "each task trained
alone". Each run logs to ``runs/week07-<stream>-<timestamp>/`` through
``shared.MetricsLogger`` (one sub-run per strategy, for ``make dashboard``)
and writes ``results.md``, ``results.json`` and one heatmap PNG per strategy.

Left out: resuming a half-finished stream (the adapter store and replay
buffer survive a kill, the optimiser state does not).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

from shared import MetricsLogger, new_run_dir, smoke
from week07_continual.learner import StrategyConfig, TrainConfig, run_stream, train_separately
from week07_continual.metrics import plot_heatmap
from week07_continual.models import load_base
from week07_continual.tasks import load_stream, make_domains_stream, make_skills_stream

# ---------------------------------------------------------------- streams and the table


def build_stream(name: str, tokenizer, n_train: int, n_test: int, seq_len: int = 64, seed: int = 0):
    if name in ("skills", "skills-facts"):
        return make_skills_stream(tokenizer, n_train, n_test, seed,
                                  variant="tools" if name == "skills" else "facts")
    if name == "domains":
        return make_domains_stream(tokenizer, n_train, n_test, seq_len, seed)
    if Path(name).is_dir():
        return load_stream(name, tokenizer, seq_len)
    raise ValueError(f"--stream must be skills, skills-facts, domains or a folder of <task>.jsonl files; "
                     f"got {name!r}")


# ---------------------------------------------------------------- the benchmark's settings

#: strategy knobs of every benchmark run (README "Benchmark"); the notebook uses the same
BENCH_OVERRIDES = {"fisher_examples": 32, "replay_capacity": 120, "replay_ratio": 0.3,
                   "ewc_lambda": 2000.0}


def bench_settings(stream: str, full: bool = False, max_len: int | None = None,
                   skills_steps: int = 0) -> tuple[TrainConfig, int, int]:
    """``(TrainConfig, n_train, n_test)`` that ``benchmarks/continual_bench.py`` uses for ``stream``.

    ``skills`` / ``skills-facts``: 200 steps per task (300 with ``full``; ``skills_steps``
    overrides), 30 / 30 examples per tool task (200 / 50 with ``full``). The facts
    tasks ignore both sizes: each is 40 facts, tested on the same 40 questions it was
    taught. ``domains``: 40 steps per topic group (120 with ``full``), 48 train / 24
    test windows (200 / 40). Batch 16, lr 1e-3 (full fine-tuning) / 3e-3 (adapters),
    24 router examples per task, seed 0. The notebook reads its settings here, so its
    table is the benchmark's rows.
    """
    if stream in ("skills", "skills-facts"):
        steps = skills_steps or (300 if full else 200)
        n_train, n_test = (200, 50) if full else (30, 30)
    elif stream == "domains":
        steps = 120 if full else 40
        n_train, n_test = (200, 40) if full else (48, 24)
    else:
        raise ValueError(f"the benchmark runs skills, skills-facts or domains, not {stream!r}")
    cfg = TrainConfig(steps_per_task=steps, batch_size=16, lr=1e-3, lora_lr=3e-3,
                      router_examples=24, max_len=max_len, seed=0)
    return cfg, n_train, n_test


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def results_table(rows: list[dict], scale: float = 1.0) -> str:
    """Markdown table of result rows (``StreamResult.row()`` plus optional keys)."""
    cols = ["stream", "strategy", "acc", "bwt", "fwt", "forgetting", "separate_acc", "router_acc",
            "wall_s", "time_x_naive", "extra_mb"]
    cols = [c for c in cols if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c in ("acc", "bwt", "fwt", "forgetting", "separate_acc") and isinstance(v, float) \
                    and r.get("unit") == "exact_match":
                v = 100 * v  # accuracies in points
                cells.append(_fmt(v, 1))
            elif c in ("wall_s",):
                cells.append(_fmt(v, 1))
            elif c in ("time_x_naive", "router_acc"):
                cells.append(_fmt(v, 2))
            else:
                cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m week07_continual.run",
                                description="Continual learning over a task stream: accuracy "
                                            "matrix, ACC/BWT/FWT/forgetting, cost.")
    p.add_argument("--stream", default="skills", help="skills | skills-facts | domains | folder of <task>.jsonl")
    p.add_argument("--strategy", default="naive",
                   help="comma-separated strategies, each a '+' of naive, ewc, online-ewc, "
                        "replay, lora, shared (default: naive)")
    p.add_argument("--model", default="auto", help="auto | baseline | tiny | checkpoint path")
    p.add_argument("--steps", type=int, default=None, help="training steps per task")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="full fine-tuning learning rate")
    p.add_argument("--lora-lr", type=float, default=3e-3)
    p.add_argument("--n-train", type=int, default=None, help="train examples per task")
    p.add_argument("--n-test", type=int, default=None, help="test examples per task")
    p.add_argument("--ewc-lambda", type=float, default=None)
    p.add_argument("--fisher", choices=("true", "empirical"), default="true")
    p.add_argument("--replay-ratio", type=float, default=0.25)
    p.add_argument("--replay-capacity", type=int, default=200)
    p.add_argument("--router-threshold", type=float, default=0.0)
    p.add_argument("--separate", action="store_true", help="also train each task alone")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the plumbing")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="run folder (default runs/week07-<stream>-<time>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.smoke or smoke(False, True)
    specs = [s.strip() for s in args.strategy.split(",") if s.strip()]
    for s in specs:  # fail on a typo before any training
        StrategyConfig.parse(s)
    progress = not args.no_progress
    model, tok, about = load_base(args.model, progress=progress)
    n_train = args.n_train or (16 if quick else 200)
    n_test = args.n_test or (8 if quick else 50)
    stream = build_stream(args.stream, tok, n_train, n_test, seed=args.seed)
    cfg = TrainConfig(steps_per_task=args.steps or (3 if quick else 200),
                      batch_size=args.batch_size, lr=args.lr, lora_lr=args.lora_lr,
                      seed=args.seed, max_len=getattr(model.config, "block_size", None),
                      router_examples=8 if quick else 64)
    out = Path(args.out) if args.out else new_run_dir(f"week07-{stream.name}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"base: {about}\nstream: {stream.name} ({', '.join(stream.task_names)}; "
          f"{stream.metric})\nrun folder: {out}")
    sep = train_separately(model, stream, cfg, progress) if args.separate else None
    rows, full = [], []
    for spec in specs:
        overrides = {"fisher_mode": args.fisher, "replay_ratio": args.replay_ratio,
                     "replay_capacity": args.replay_capacity,
                     "router_threshold": args.router_threshold}
        if args.ewc_lambda is not None:
            overrides["ewc_lambda"] = args.ewc_lambda
        if quick:
            overrides["fisher_examples"] = 4
        strategy = StrategyConfig.parse(spec, **overrides)
        safe = spec.replace("+", "_")
        with MetricsLogger(out / safe, config={"stream": stream.name, "strategy": spec}) as log, \
                tempfile.TemporaryDirectory() as work:
            res = run_stream(model, stream, strategy, cfg, workdir=out / safe / "state"
                             if not quick else work, logger=log, progress=progress)
            s = res.matrix.summary()
            log.log(step=None, **{k: v for k, v in s.items() if not math.isnan(v)},
                    wall_s=res.wall_s, extra_mb=res.extra_bytes / 2**20)
        plot_heatmap(res.matrix, f"{stream.name}: {spec}", path=out / f"heatmap_{safe}.png")
        row = {**res.row(), "unit": stream.metric}
        if sep is not None:
            row["separate_acc"] = sum(sep) / len(sep)
        rows.append(row)
        full.append({**res.to_dict(), "separate": sep})
        print(f"\n{spec}: accuracy matrix ({stream.metric})\n{res.matrix.to_markdown()}")
    naive = next((r["wall_s"] for r in rows if r["strategy"] == "naive"), None)
    for r in rows:
        if naive:
            r["time_x_naive"] = r["wall_s"] / naive
    table = results_table(rows)
    print("\n" + table)
    (out / "results.md").write_text(f"base: {about}\n\n{table}\n")
    (out / "results.json").write_text(json.dumps({"base": about, "rows": rows, "runs": full},
                                                 indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
