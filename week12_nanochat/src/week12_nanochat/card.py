"""The speedrun's report card: BASE / SFT / RL side by side, what each stage cost, where it ran.

``measure(stages, cfg)`` scores every stage's model the same way with week09's
``report.stage_scores`` (week05's report card: pydocs bits per byte, the two offline
multiple-choice tasks and their CORE-style mean, week04's three tool tasks on held-out
problems with and without the tools; plus the verified win rate), and adds:

- ``chat_core``: the ChatCORE-style aggregate, as nanochat defines it: the mean centred
  accuracy ``(acc - chance) / (1 - chance)`` over the chat tasks. Here the five tasks are the
  two multiple-choice tasks (their centred mean is week05's ``core``; 4 choices, chance 1/4)
  and the three tool tasks with their tools (generative: chance 0, centred = acc), so
  ``chat_core = (2 * core + arithmetic + string + facts) / 5``;
- parameters and week03's training FLOPs per token (``flops_per_token``).

``write_card(out, preset, stages)`` writes ``<out>/report/report.md`` (the targets of the
preset against the final model, week09's alignment-tax table with its loss marks, time per
stage, parameters and FLOPs, the environment), ``report.json`` (every figure), ``stages.png``
(time per stage) and ``tasks.png`` (each task per stage), all atomically.

Left out: the benchmarks that need downloads (ARC, MMLU, GSM8K, HumanEval: nanochat's
ChatCORE tasks; week05 loads them by name for a GPU owner) and any judge model.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from matplotlib.figure import Figure

from shared import write_json_atomic

MODEL_STAGES = ("base", "sft", "rl")
TASKS = ("pydocs_cloze_acc_norm", "pydocs_next_line_acc_norm", "tool_arithmetic_tools",
         "tool_string_tools", "tool_facts_tools")
# the finished model's targets (the cpu preset's, README): key -> (what, at least)
TARGETS = {"tool_arithmetic_tools": ("arithmetic with the calculator", 0.80),
           "tool_facts_tools": ("facts of the generated world with search", 0.70),
           "tool_string_tools": ("string tasks with the Python REPL", 0.50)}

# ---------------------------------------------------------------- measuring


def chat_core(scores: dict) -> float:
    """The ChatCORE-style aggregate of one column (see the module docstring)."""
    tools = [scores[k] for k in ("tool_arithmetic_tools", "tool_string_tools",
                                 "tool_facts_tools") if k in scores]
    return (2 * scores["core"] + sum(tools)) / (2 + len(tools))


def measure(stages: dict[str, Path], cfg, progress: bool = True) -> dict:
    """Score each model folder of ``stages`` ({"base": folder, ...}) with week09's
    ``stage_scores`` under ``cfg`` (a week09 ``TaxConfig``); params and FLOPs per token too."""
    from dataclasses import asdict

    from week03_training.flops import flops_per_token
    from week09_alignment.common import load_start
    from week09_alignment.report import stage_scores

    columns, sources, sizes = {}, {}, {}
    for name in [s for s in MODEL_STAGES if s in stages]:
        model, tok, where = load_start(stages[name], progress=progress)
        scores = stage_scores(model, tok, cfg)
        scores["chat_core"] = chat_core(scores)
        columns[name], sources[name] = scores, where
        sizes[name] = {"params": sum(p.numel() for p in model.parameters()),
                       "flops_per_token": flops_per_token(model, model.config.block_size),
                       "block_size": model.config.block_size}
    return {"columns": columns, "sources": sources, "sizes": sizes, "config": asdict(cfg)}


def environment() -> dict:
    """Where the run happened: python, torch, device, threads, git commit."""
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "gpu": gpu,
            "gpus": torch.cuda.device_count() if gpu else 0, "git_commit": commit or "unknown",
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it is under it, else absolute."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


# ---------------------------------------------------------------- the card


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def render(preset: dict, scores: dict, stages: dict[str, dict], env: dict) -> str:
    """report.md's text."""
    from week09_alignment.report import TaxConfig
    from week09_alignment.report import render as tax_table

    cols = scores["columns"]
    final = [s for s in MODEL_STAGES if s in cols][-1]
    lines = [f"# nanochat speedrun report card: preset `{preset['name']}`", "",
             preset.get("about", ""), "",
             f"## The finished model ({final.upper()}) on held-out problems, with its tools", "",
             "| task | score | target | met |", "|---|---|---|---|"]
    for key, (what, target) in TARGETS.items():
        v = cols[final].get(key)
        met = "yes" if v is not None and v >= target else "no"
        lines.append(f"| {what} | {_fmt(v)} | >= {target:.2f} | {met} |")
    lines += ["", f"ChatCORE-style aggregate: BASE {_fmt(cols.get('base', {}).get('chat_core'))}"
              + "".join(f", {s.upper()} {_fmt(cols[s]['chat_core'])}" for s in cols
                        if s != "base"),
              " (the mean centred accuracy (acc - chance) / (1 - chance) over the two multiple-"
              "choice tasks and the three tool tasks with tools, chance 0 for those: as "
              "nanochat's ChatCORE, over this project's offline tasks).", ""]
    known = {f for f in TaxConfig.__dataclass_fields__}
    cfg = TaxConfig(**{k: v for k, v in scores["config"].items() if k in known})
    table = tax_table(cols, cfg, scores["sources"]).split("\n", 1)[1]
    lines += ["## Every stage measured the same way (week09's alignment tax)", table.strip(), ""]
    lines += ["## Time per stage", "", "| stage | wall time | CPU time | status | what it did |",
              "|---|---|---|---|---|"]
    for name, st in stages.items():
        info = st.get("metrics", {})
        what = ", ".join(f"{k} {_fmt(v)}" for k, v in info.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool))
        cpu = f"{st['cpu_s']:.0f} s" if "cpu_s" in st else "n/a"
        lines.append(f"| {name} | {st.get('wall_s', 0):.0f} s | {cpu} | "
                     f"{st.get('status', '')} | {what} |")
    total = sum(st.get("wall_s", 0) for st in stages.values())
    cpu = sum(st.get("cpu_s", 0) for st in stages.values())
    lines += [f"| total | {total:.0f} s | {cpu:.0f} s | | |", "",
              "Wall times are of the machine named below, as it was at the time (a shared CPU "
              "makes them pessimistic); CPU time is this process's, over all its threads.", "",
              "## Parameters and FLOPs", "",
              "| model | parameters | training FLOPs per token | tokens trained | FLOPs |",
              "|---|---|---|---|---|"]
    for name, size in scores["sizes"].items():
        tokens = stages.get(name, {}).get("metrics", {}).get("tokens")
        flops = f"{size['flops_per_token'] * tokens:.2e}" if tokens else "n/a (rollouts)"
        lines.append(f"| {name.upper()} | {size['params']:,} | {size['flops_per_token']:.3e} | "
                     f"{_fmt(tokens)} | {flops} |")
    lines += ["", "FLOPs per token: week03's `flops_per_token` (6 N + 12 L C T, N without the "
              "embedding table).", "", "## Environment", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "## Figures", "", "![time per stage](stages.png)", "", "![tasks](tasks.png)", ""]
    return "\n".join(lines)


def plot_stages(stages: dict[str, dict], path: Path) -> Path:
    names = list(stages)
    fig = Figure(figsize=(6.0, 0.45 * len(names) + 1.2))
    ax = fig.subplots()
    ax.barh(names, [stages[n].get("wall_s", 0) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("wall time (s)")
    ax.set_title("time per stage")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_tasks(columns: dict[str, dict], path: Path) -> Path:
    names = [s for s in MODEL_STAGES if s in columns]
    fig = Figure(figsize=(8.0, 4.0))
    ax = fig.subplots()
    w = 0.8 / max(len(names), 1)
    for i, s in enumerate(names):
        ax.bar([t + (i - (len(names) - 1) / 2) * w for t in range(len(TASKS))],
               [columns[s].get(k, 0.0) for k in TASKS], width=w, label=s.upper())
    ax.set_xticks(range(len(TASKS)), [k.replace("_acc_norm", "").replace("_tools", " (tools)")
                                      for k in TASKS], rotation=15, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (acc_norm for multiple choice)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return path


def write_card(out: str | os.PathLike, preset: dict, scores: dict, stages: dict[str, dict]
               ) -> Path:
    """report.md, report.json, stages.png and tasks.png into ``<out>/report``; returns the .md."""
    folder = Path(out) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    env = environment()
    plot_stages(stages, folder / "stages.png")
    plot_tasks(scores["columns"], folder / "tasks.png")
    write_json_atomic(folder / "report.json", {"preset": preset, "stages": stages,
                                               "environment": env, "targets": {
                                                   k: t for k, (_, t) in TARGETS.items()},
                                               **scores})
    md = folder / "report.md"
    tmp = md.with_name("report.md.tmp")
    tmp.write_text(render(preset, scores, stages, env))
    os.replace(tmp, md)
    return md
