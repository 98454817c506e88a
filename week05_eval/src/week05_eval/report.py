"""The report card: one command that measures a checkpoint on everything offline.

    python -m week05_eval.report runs/week05-baseline-.../train/checkpoints/step_0001000.safetensors
    python -m week05_eval.report runs/my-run --tokenizer data/tok.json --out reports/mine

It loads the model and tokenizer (``loading.load_for_eval``), then measures:

- held-out loss, perplexity and bits per byte (the ``val`` shards the model
  was trained next to, or the validation documents of ``--data``), and the
  unigram bits per byte of the same text as the trivial baseline;
- the offline multiple-choice tasks (pydocs cloze and next line): accuracy,
  length-normalised accuracy, chance, centred accuracy and their CORE mean,
  and the accuracy of the unigram model (``UnigramLM``: word frequency alone);
- week04's synthetic tool tasks (arithmetic, string, facts), generated with
  and without tools, when week04 provides them;

and writes ``report.md`` (tables of every figure, model and data facts,
timings), ``report.json``, ``loss_curve.png`` (from the training run's
``metrics.jsonl``) and ``tasks.png`` next to the checkpoint (or in ``--out``).
The figures are also logged as scalars through ``shared.MetricsLogger`` into
a ``runs/week05-report-*`` run, so ``make dashboard`` shows them.

Left out: the real benchmarks (ARC, MMLU... need downloads; load them with
``week05_eval.tasks`` and score them with ``evaluate_mc``, or run lm-eval
through ``NanochatLM``) and any comparison between two checkpoints.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: the backend stays the user's

from shared import MetricsLogger, load_corpus, new_run_dir, read_metrics
from shared.checkpoint import CheckpointError
from week05_eval.generative import evaluate_generative
from week05_eval.loading import load_for_eval
from week05_eval.metrics import (
    UnigramLM,
    encode_docs,
    evaluate_data_dir,
    evaluate_ids,
    read_split,
    token_bytes_of,
    unigram_bpb,
)
from week05_eval.multiple_choice import core_score, evaluate_mc
from week05_eval.tasks import TOOL_KINDS, pydocs_cloze, pydocs_next_line, tool_task

# --------------------------------------------------------------------------- configuration


@dataclass
class ReportConfig:
    limit: int = 200                # examples per multiple-choice task
    gen_limit: int = 30             # examples per generative (tool) task
    max_tokens: int = 100_000       # held-out tokens scored for loss / bpb
    batch_size: int = 16
    tools: bool = True              # also run the tool tasks with tools
    max_new_tokens: int = 48
    seed: int = 0
    data: str | None = None         # held-out text when the checkpoint records no data folder
    progress: bool = True


def default_tools(seed: int = 0) -> dict:
    """week04's tools by the name the model writes before the colon in a tool call.

    ``search`` looks up the generated world of week04's fact questions
    (``fact_search(seed)``, the seed the tasks were drawn with), the tool
    the facts conversations were written against.
    """
    from week04_modern_arch_tools import Calculator, PythonREPL, fact_search
    return {"calculator": Calculator(), "python": PythonREPL(), "search": fact_search(seed)}


# --------------------------------------------------------------------------- measuring


def evaluate_checkpoint(model, tokenizer, meta: dict, cfg: ReportConfig | None = None) -> dict:
    """Every measurement of the report card, as one JSON-able dict (see the module docstring)."""
    cfg = cfg or ReportConfig()
    out: dict = {"timings": {}, "notes": []}
    t0 = time.perf_counter()
    tb = token_bytes_of(tokenizer)
    extra = (meta.get("train", {}) or {}).get("extra", {}) or {}
    data_dir = extra.get("data_dir")
    source = cfg.data or extra.get("data_source") or "pydocs"
    corpus = None
    if data_dir and (Path(data_dir) / "index.json").is_file() and cfg.data is None:
        val = evaluate_data_dir(model, data_dir, tb, batch_size=cfg.batch_size,
                                max_tokens=cfg.max_tokens, progress=cfg.progress)
        train_ids = read_split(data_dir, "train")
        val_ids = read_split(data_dir, "val")[:cfg.max_tokens + 1]
        out["data"] = {"source": source, "kind": f"val shards of {data_dir}",
                       "train_tokens": int(len(train_ids))}
    else:
        corpus = load_corpus(source)
        val_ids = encode_docs(tokenizer, [d.text for d in corpus.val_docs])[:cfg.max_tokens + 1]
        val = evaluate_ids(model, val_ids, tb, batch_size=cfg.batch_size, progress=cfg.progress)
        train_text = [d.text for d in corpus.train_docs]
        train_ids = encode_docs(tokenizer, _cap_chars(train_text, 2_000_000))
        out["data"] = {"source": source, "kind": "validation documents",
                       "train_tokens": len(train_ids)}
    uni = unigram_bpb(train_ids, val_ids, tb)
    unigram_model = UnigramLM(train_ids, int(tb.numel()))
    out["val"] = val.to_dict()
    out["unigram"] = uni.to_dict()
    out["timings"]["loss"] = time.perf_counter() - t0

    # multiple choice (offline tasks built from held-out documents: the training text's when
    # it is pydocs or local files, pydocs otherwise)
    t0 = time.perf_counter()
    if corpus is None:
        corpus = load_corpus(source if source == "pydocs" or Path(source).exists() else "pydocs")
    mc = []
    for build in (pydocs_cloze, pydocs_next_line):
        task = build(n=cfg.limit, seed=cfg.seed, corpus=corpus)
        mc.append(evaluate_mc(model, tokenizer, task, batch_size=cfg.batch_size,
                              progress=cfg.progress))
        # the trivial baseline: what token frequency alone gets on the same examples
        uni_mc = evaluate_mc(unigram_model, tokenizer, task, batch_size=64)
        out.setdefault("mc", []).append({**mc[-1].to_dict(),
                                         "unigram_acc_norm": uni_mc.acc_norm})
    out["core"] = core_score(mc)
    out["timings"]["multiple_choice"] = time.perf_counter() - t0

    # generative tool tasks, with and without tools
    t0 = time.perf_counter()
    out["gen"] = []
    try:
        tasks = [tool_task(kind, n=cfg.gen_limit, seed=cfg.seed, split="test") for kind in TOOL_KINDS]
    except ImportError as e:
        tasks = []
        out["notes"].append(f"tool tasks skipped: week04 does not provide them yet ({e})")
    tools = None
    if tasks and cfg.tools:
        try:
            tools = default_tools(cfg.seed)
        except ImportError as e:
            out["notes"].append(f"tool use skipped: week04 tools unavailable ({e})")
    for task in tasks:
        row = {"task": task.name, "n": len(task.examples)}
        plain = evaluate_generative(model, tokenizer, task, style="chat",
                                    max_new_tokens=cfg.max_new_tokens, progress=cfg.progress)
        row["accuracy"] = plain.accuracy
        row["example"] = plain.predictions[0][:80] if plain.predictions else ""
        if tools is not None:
            with_tools = evaluate_generative(model, tokenizer, task, style="chat", tools=tools,
                                             max_new_tokens=cfg.max_new_tokens,
                                             progress=cfg.progress)
            row["accuracy_tools"] = with_tools.accuracy
            row["tool_calls"] = with_tools.tool_calls
        out["gen"].append(row)
    if tools is not None:
        for tool in tools.values():
            close = getattr(tool, "close", None)
            if callable(close):
                close()
    out["timings"]["generative"] = time.perf_counter() - t0
    return out


def _cap_chars(texts: list[str], limit: int) -> list[str]:
    out, total = [], 0
    for t in texts:
        if total >= limit:
            break
        out.append(t)
        total += len(t)
    return out


# --------------------------------------------------------------------------- writing


def training_run_dir(checkpoint: Path) -> Path | None:
    """The run folder a week03 checkpoint lives in (``<run>/checkpoints/step_*.safetensors``)."""
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    return run if (run / "metrics.jsonl").is_file() else None


def plot_loss_curve(run_dir: Path, path: Path) -> Path | None:
    rows = read_metrics(run_dir)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and r.get("step") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train:
        return None
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    ax.plot(*zip(*train), lw=1, label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", ms=3, label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("nats / token")
    ax.set_title(f"training run {run_dir.name}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_tasks(results: dict, path: Path) -> Path:
    names = [r["task"] for r in results["mc"]] + [r["task"] for r in results["gen"]]
    fig = Figure(figsize=(max(5.0, 1.2 * len(names) + 2), 3.8))
    ax = fig.subplots()
    xs = range(len(names))
    accs = [r["acc_norm"] for r in results["mc"]] + [r["accuracy"] for r in results["gen"]]
    ax.bar([x - 0.2 for x in xs], accs, width=0.4, label="accuracy (acc_norm for choice tasks)")
    tools = [r.get("accuracy_tools") for r in results["gen"]]
    if any(t is not None for t in tools):
        off = len(results["mc"])
        ax.bar([off + i + 0.2 for i, t in enumerate(tools) if t is not None],
               [t for t in tools if t is not None], width=0.4, label="with tools")
    for i, r in enumerate(results["mc"]):
        ax.hlines(r["chance"], i - 0.45, i + 0.45, colors="k", linestyles="dashed",
                  label="chance" if i == 0 else None)
    ax.set_xticks(list(xs), names, rotation=20, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def render_markdown(results: dict, meta: dict, figures: list[Path]) -> str:
    m = meta.get("model", {})
    val, uni = results["val"], results["unigram"]
    lines = [f"# Report card: `{Path(meta['checkpoint']).name}`", ""]
    lines += ["## Model", "", "| field | value |", "|---|---|",
              f"| checkpoint | `{meta['checkpoint']}` |",
              f"| class | {m.get('class', '?')} |",
              f"| parameters | {m.get('n_params', 0):,} |",
              f"| layers / width / heads | {m.get('n_layer')} / {m.get('n_embd')} / "
              f"{m.get('n_head')} |",
              f"| context (block_size) | {m.get('block_size')} |",
              f"| training step | {meta.get('step', '?')} |", ""]
    train = meta.get("train", {})
    if train:
        tokens = train.get("batch_size", 0) * train.get("block_size", 0) * \
            train.get("grad_accum", 1) * int(meta.get("step", 0) or 0)
        lines += [f"Trained {meta.get('step', '?')} steps with {train.get('optimizer')} "
                  f"(lr {train.get('lr')}), {tokens:,} tokens seen.", ""]
    d = results["data"]
    lines += ["## Data", "", "| field | value |", "|---|---|",
              f"| tokenizer | `{meta.get('tokenizer_path', '?')}` |",
              f"| held-out text | {d['source']} ({d['kind']}) |",
              f"| held-out tokens scored | {val['tokens']:,} ({val['bytes']:,} bytes) |",
              f"| training tokens (unigram fit) | {d['train_tokens']:,} |", ""]
    lines += ["## Language modelling", "", "| metric | model | unigram baseline |", "|---|---|---|",
              f"| loss (nats/token) | {val['loss']:.4f} | {uni['loss']:.4f} |",
              f"| perplexity | {val['ppl']:.2f} | {uni['ppl']:.2f} |",
              f"| bits per byte | **{val['bpb']:.4f}** | {uni['bpb']:.4f} |", ""]
    lines += ["## Multiple choice", "",
              "| task | n | acc | acc_norm | chance | unigram model acc_norm | centred |",
              "|---|---|---|---|---|---|---|"]
    for r in results["mc"]:
        lines.append(f"| {r['task']} | {r['n']} | {r['acc']:.3f} | {r['acc_norm']:.3f} | "
                     f"{r['chance']:.3f} | {r['unigram_acc_norm']:.3f} | {r['centered']:+.3f} |")
    lines += ["", f"CORE-style score (mean centred acc_norm): **{results['core']:+.4f}**", ""]
    if results["gen"]:
        lines += ["## Generative tool tasks", "",
                  "| task | n | accuracy, no tools | accuracy, with tools | tool calls | "
                  "a reply without tools |", "|---|---|---|---|---|---|"]
        for r in results["gen"]:
            wt = f"{r['accuracy_tools']:.3f}" if "accuracy_tools" in r else "n/a"
            example = r.get("example", "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r['task']} | {r['n']} | {r['accuracy']:.3f} | {wt} | "
                         f"{r.get('tool_calls', 'n/a')} | `{example}` |")
        lines.append("")
    for note in results["notes"]:
        lines.append(f"- note: {note}")
    if results["notes"]:
        lines.append("")
    lines += ["## Timings", "", "| part | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in results["timings"].items()]
    lines += [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures] + [""]
    return "\n".join(lines)


def flat_scalars(results: dict) -> dict:
    """The headline numbers as flat scalars for ``MetricsLogger``."""
    out = {"val_loss": results["val"]["loss"], "val_bpb": results["val"]["bpb"],
           "val_ppl": results["val"]["ppl"], "unigram_bpb": results["unigram"]["bpb"],
           "core": results["core"]}
    for r in results["mc"]:
        out[f"{r['task']}_acc_norm"] = r["acc_norm"]
        out[f"{r['task']}_centered"] = r["centered"]
    for r in results["gen"]:
        out[f"{r['task']}_acc"] = r["accuracy"]
        if "accuracy_tools" in r:
            out[f"{r['task']}_acc_tools"] = r["accuracy_tools"]
    return out


def make_report(checkpoint, tokenizer=None, out: str | Path | None = None,
                cfg: ReportConfig | None = None, device: str = "cpu",
                runs: str | Path | None = None) -> dict:
    """Load, measure, write report.md/json + plots, log to a metrics run. Returns the results.

    ``results["paths"]`` lists what was written.
    """
    cfg = cfg or ReportConfig()
    t0 = time.perf_counter()
    model, tok, meta = load_for_eval(checkpoint, tokenizer=tokenizer, device=device)
    load_s = time.perf_counter() - t0
    results = evaluate_checkpoint(model, tok, meta, cfg)
    results["timings"] = {"load": load_s, **results["timings"]}
    ckpt = Path(meta["checkpoint"])
    out_dir = Path(out) if out is not None else ckpt.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    run = training_run_dir(ckpt)
    if run is not None:
        p = plot_loss_curve(run, out_dir / "loss_curve.png")
        if p:
            figures.append(p)
    figures.append(plot_tasks(results, out_dir / "tasks.png"))
    results["timings"]["total"] = time.perf_counter() - t0
    (out_dir / "report.md").write_text(render_markdown(results, meta, figures), encoding="utf-8")
    (out_dir / "report.json").write_text(json.dumps({"meta": meta, "results": results,
                                                     "config": asdict(cfg)}, indent=2, default=str))
    run_dir = new_run_dir("week05-report", root=runs)
    with MetricsLogger(run_dir, config={"checkpoint": str(ckpt), "report": str(out_dir),
                                        **asdict(cfg)}, tensorboard=False) as log:
        log.log(step=int(meta.get("step", 0) or 0), **flat_scalars(results))
    for f in figures:
        shutil.copy(f, run_dir / f.name)
    results["paths"] = {"report": str(out_dir / "report.md"), "json": str(out_dir / "report.json"),
                        "figures": [str(f) for f in figures], "metrics_run": str(run_dir)}
    return results


# --------------------------------------------------------------------------- command line


def make_parser() -> argparse.ArgumentParser:
    d = ReportConfig()
    ap = argparse.ArgumentParser(
        prog="python -m week05_eval.report",
        description="Measure a checkpoint on every offline evaluation and write a markdown report "
                    "card with plots.")
    ap.add_argument("checkpoint", help="a .safetensors checkpoint, a training run folder, or a "
                                       "checkpoints folder (the newest step is used)")
    ap.add_argument("--tokenizer", default=None,
                    help="the model's tokenizer.json (default: recorded in the checkpoint or found "
                         "next to it)")
    ap.add_argument("--out", default=None,
                    help="folder for report.md, report.json and the PNGs (default: next to the "
                         "checkpoint)")
    ap.add_argument("--data", default=None,
                    help="held-out text: 'pydocs' or a local text file/folder (default: the val "
                         "shards recorded in the checkpoint, else pydocs)")
    ap.add_argument("--limit", type=int, default=d.limit,
                    help=f"examples per multiple-choice task (default {d.limit})")
    ap.add_argument("--gen-limit", type=int, default=d.gen_limit,
                    help=f"examples per generative tool task (default {d.gen_limit})")
    ap.add_argument("--max-tokens", type=int, default=d.max_tokens,
                    help=f"held-out tokens scored for loss and bpb (default {d.max_tokens})")
    ap.add_argument("--batch-size", type=int, default=d.batch_size,
                    help=f"sequences per forward pass (default {d.batch_size})")
    ap.add_argument("--no-tools", action="store_true",
                    help="run the tool tasks without tools only")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    ap.add_argument("--seed", type=int, default=d.seed, help="seed of the task samples (default 0)")
    ap.add_argument("--runs", default=None,
                    help="runs folder for the metrics run (default $NANOCHAT_RUNS or ./runs)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    for name in ("limit", "gen_limit", "max_tokens", "batch_size"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    cfg = ReportConfig(limit=args.limit, gen_limit=args.gen_limit, max_tokens=args.max_tokens,
                       batch_size=args.batch_size, tools=not args.no_tools, seed=args.seed,
                       data=args.data, progress=not args.quiet)
    try:
        res = make_report(args.checkpoint, tokenizer=args.tokenizer, out=args.out, cfg=cfg,
                          device=args.device, runs=args.runs)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"val bpb {res['val']['bpb']:.4f} (unigram {res['unigram']['bpb']:.4f}), "
          f"CORE {res['core']:+.4f}")
    print(f"report: {res['paths']['report']}")
    print(f"metrics run: {res['paths']['metrics_run']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
