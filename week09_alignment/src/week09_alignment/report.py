"""The alignment tax: what each stage gained and what it cost, in one report card.

    python -m week09_alignment.report --base auto --sft runs/week09/sft --dpo runs/week09/dpo \\
        --rl runs/week09/rl --out runs/week09/report

Every stage's model (BASE, SFT, DPO, RL, as nanochat's report card has its
BASE / MID / SFT / RL columns) is measured the same way:

- week05's report card (``week05_eval.report.evaluate_checkpoint``): pydocs
  bits per byte, the two offline multiple-choice tasks and their CORE-style
  mean, week04's three tool tasks with and without the tools;
- the verified win rate on held-out preference prompts (``prefs``: a reply
  wins when ``prefs.is_correct`` accepts it).

``report.md`` holds the table, each cell marked with a down arrow where the
stage lost ground against the stage before it by more than two standard
errors (a binomial one for accuracies; 0.01 bits per byte for bpb), and
week07's accuracy-matrix view of the stages: each stage is a "task" with its
own target ability (SFT: tool use, the mean with-tools accuracy; DPO: the
verified win rate; RL: arithmetic with the calculator), R[i][j] is ability j
after stage i, the base model is the row before the stream, so BWT says how
much the later stages took from the earlier stages' gains. ``tax.png`` draws
that matrix; the scalars also go to a ``runs/week09-report-*`` metrics run for
the dashboard.

Left out: the real benchmarks (ARC, MMLU, GSM8K need downloads; week05
loads them by name) and human preference judgements.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from shared import MetricsLogger, new_run_dir

STAGES = ("base", "sft", "dpo", "rl")
TARGETS = {"sft": "tool use (mean, with tools)", "dpo": "verified win rate",
           "rl": "arithmetic with the calculator"}


@dataclass
class TaxConfig:
    limit: int = 100          # examples per multiple-choice task
    gen_limit: int = 30       # examples per tool task
    max_tokens: int = 50_000  # held-out pydocs tokens for bpb
    pairs: int = 60           # held-out preference prompts for the win rate
    max_new_tokens: int = 64  # counts the forced tool output; 40 cuts arithmetic answers
    seed: int = 0
    progress: bool = True


def stage_scores(model, tokenizer, cfg: TaxConfig) -> dict:
    """Every figure of one stage's column (see the module docstring)."""
    from week05_eval.report import ReportConfig, default_tools, evaluate_checkpoint
    from week09_alignment.dpo_train import verified_win_rate
    from week09_alignment.prefs import is_correct, preference_pairs

    model.eval()
    rc = ReportConfig(limit=cfg.limit, gen_limit=cfg.gen_limit, max_tokens=cfg.max_tokens,
                      max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, data="pydocs",
                      progress=cfg.progress)
    r = evaluate_checkpoint(model, tokenizer, {}, rc)
    scores = {"pydocs_bpb": r["val"]["bpb"], "core": r["core"]}
    for mc in r["mc"]:
        scores[f"{mc['task']}_acc_norm"] = mc["acc_norm"]
    for g in r["gen"]:
        scores[f"{g['task']}_no_tools"] = g["accuracy"]
        if "accuracy_tools" in g:
            scores[f"{g['task']}_tools"] = g["accuracy_tools"]
    tools = default_tools(cfg.seed)
    try:
        pairs = preference_pairs(cfg.pairs, seed=cfg.seed, split="test")
        scores["win_rate"] = verified_win_rate(model, tokenizer, pairs, is_correct, tools=tools,
                                               max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    finally:
        for tool in tools.values():
            getattr(tool, "close", lambda: None)()
    scores["tool_use"] = tool_use(scores)
    return scores


def tool_use(scores: dict) -> float:
    """The mean of the tool tasks WITH their tools (``tool_<kind>_tools``; not ``_no_tools``)."""
    with_tools = [v for k, v in scores.items() if k.startswith("tool_") and k.endswith("_tools")
                  and not k.endswith("_no_tools")]
    return sum(with_tools) / len(with_tools) if with_tools else float("nan")


def sample_sizes(cfg: TaxConfig) -> dict:
    """How many examples stand behind each figure (for the standard errors)."""
    return {"pydocs_cloze_acc_norm": cfg.limit, "pydocs_next_line_acc_norm": cfg.limit,
            "win_rate": cfg.pairs, "tool_use": 3 * cfg.gen_limit}


def lost(metric: str, before: float, after: float, n: int | None) -> bool:
    """Whether ``after`` is worse than ``before`` by more than the noise (see the docstring)."""
    if any(isinstance(v, float) and math.isnan(v) for v in (before, after)):
        return False
    if metric == "pydocs_bpb":
        return after - before > 0.01
    if metric == "core":
        return before - after > 0.05
    p = min(max((before + after) / 2, 1e-3), 1 - 1e-3)
    se = math.sqrt(2 * p * (1 - p) / max(n or 30, 1))
    return before - after > 2 * se


def tax_matrix(columns: dict[str, dict]):
    """week07's ``AccuracyMatrix`` over the trained stages (rows) and their target abilities
    (columns); the base model is its row before the stream. None without a trained stage."""
    from week07_continual import AccuracyMatrix

    keys = {"sft": "tool_use", "dpo": "win_rate", "rl": "tool_arithmetic_tools"}
    trained = [s for s in ("sft", "dpo", "rl") if s in columns]
    if not trained:
        return None
    m = AccuracyMatrix([f"{s.upper()}: {TARGETS[s]}" for s in trained])
    for i, stage in enumerate(trained):
        m.record_row(i, [columns[stage].get(keys[t], float("nan")) for t in trained])
    if "base" in columns:
        m.record_row(-1, [columns["base"].get(keys[t], float("nan")) for t in trained])
    return m


def render(columns: dict[str, dict], cfg: TaxConfig, sources: dict[str, str]) -> str:
    names = [s for s in STAGES if s in columns]
    metrics = list(dict.fromkeys(k for s in names for k in columns[s]))
    sizes = {**sample_sizes(cfg)}
    lines = ["# The alignment tax (week09)", "",
             "Each column is a stage's model, measured the same way; ↓ marks a loss against "
             "the stage before it beyond two standard errors.", "",
             "| metric | " + " | ".join(n.upper() for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for k in metrics:
        cells = []
        for i, s in enumerate(names):
            v = columns[s].get(k)
            if v is None:
                cells.append("n/a")
                continue
            mark = ""
            if i and columns[names[i - 1]].get(k) is not None:
                n = sizes.get(k, cfg.gen_limit)
                mark = " ↓" if lost(k, columns[names[i - 1]][k], v, n) else ""
            cells.append(f"{v:.3f}{mark}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "## What each stage lost", ""]
    for i, s in enumerate(names[1:], 1):
        prev = columns[names[i - 1]]
        gone = [k for k in metrics if k in prev and k in columns[s] and
                lost(k, prev[k], columns[s][k], sizes.get(k, cfg.gen_limit))]
        lines.append(f"- {s.upper()}: " + (", ".join(gone) if gone else "nothing beyond noise"))
    m = tax_matrix(columns)
    if m is not None:
        lines += ["", "## The stages as a continual-learning stream (week07's matrix)", "",
                  m.to_markdown(), ""]
        try:
            lines.append(f"BWT {m.bwt():+.3f} (how much the later stages took from the earlier "
                         f"stages' target abilities), ACC {m.acc():.3f}")
        except ValueError:
            pass
    lines += ["", "## Models", ""] + [f"- {s.upper()}: {sources[s]}" for s in names]
    return "\n".join(lines) + "\n"


def alignment_tax(stages: dict[str, str], out: str | Path, cfg: TaxConfig | None = None) -> dict:
    """Measure every stage in ``stages`` ({name: init spec or stage folder}); write the card."""
    from week07_continual import plot_heatmap
    from week09_alignment.common import load_start, write_json

    cfg = cfg or TaxConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stages {bad}; valid: {', '.join(STAGES)}")
    columns, sources = {}, {}
    for name in [s for s in STAGES if s in stages]:
        model, tok, where = load_start(stages[name], progress=cfg.progress)
        columns[name], sources[name] = stage_scores(model, tok, cfg), where
    text = render(columns, cfg, sources)
    (out / "report.md").write_text(text)
    result = {"columns": columns, "sources": sources, "config": asdict(cfg)}
    write_json(out / "report.json", result)
    m = tax_matrix(columns)
    if m is not None:
        plot_heatmap(m, title="ability (column) after each stage (row)", path=out / "tax.png")
    log = MetricsLogger(new_run_dir("week09-report"))
    for i, s in enumerate(s for s in STAGES if s in columns):
        log.log(i, **columns[s])
    log.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m week09_alignment.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for s in STAGES:
        p.add_argument(f"--{s}", help=f"the {s.upper()} model: a stage folder or checkpoint"
                       + (" (auto: the week05 baseline or week07's tiny base)" if s == "base"
                          else ""))
    p.add_argument("--out", default="runs/week09/report")
    p.add_argument("--gen-limit", type=int, default=TaxConfig.gen_limit)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    stages = {s: getattr(args, s) for s in STAGES if getattr(args, s)}
    if not stages:
        p.error("name at least one stage: --base, --sft, --dpo, --rl")
    cfg = TaxConfig(gen_limit=args.gen_limit, progress=not args.no_progress)
    alignment_tax(stages, args.out, cfg)
    print((Path(args.out) / "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
