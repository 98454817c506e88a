"""The metrics dashboard: every run under ``runs/`` as PNG plots plus an index.html.

``python -m shared.dashboard runs`` (``make dashboard``) reads each run folder
written by ``MetricsLogger``, plots every scalar against the step into
``<run>/metrics.png``, overlays the scalars that several runs share into
``compare_<name>.png``, and writes ``index.html`` with the plots, each run's
config and last values, the saved benchmark tables and, when a study path is chosen
(``make path``), the learner's progress chart and table from ``shared.progress``. Open the HTML file in
a browser; no server needed.

Left out: live updating and interactive zoom (TensorBoard does that from the
``tb/`` folder each run also has when tensorboard is installed).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
from pathlib import Path

from matplotlib.figure import Figure  # drawn without pyplot: no backend switch, no globals

from shared.metrics import META_FILE, list_runs, load_benchmarks, read_metrics  # noqa: E402

MAX_PANELS = 12


def _series(rows: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """key -> (x, y) for every numeric scalar; x is the step, else the row number."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for i, row in enumerate(rows):
        x = row.get("step")
        x = i if x is None else x
        for key, val in row.items():
            if key in ("step", "time") or not isinstance(val, (int, float)) or isinstance(val, bool):
                continue
            xs, ys = out.setdefault(key, ([], []))
            xs.append(x)
            ys.append(val)
    return out


def plot_run(run_dir: Path, title: str | None = None) -> Path | None:
    """Write ``<run_dir>/metrics.png`` (one panel per scalar); None if nothing to plot."""
    series = _series(read_metrics(run_dir))
    if not series:
        return None
    keys = sorted(series)[:MAX_PANELS]
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        xs, ys = series[key]
        ax.plot(xs, ys, marker="." if len(xs) < 30 else None, lw=1.2)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        finite = [y for y in ys if math.isfinite(y)]
        if "loss" in key and finite and min(finite) > 0 and max(finite) / min(finite) > 50:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title or run_dir.name, fontsize=11)
    fig.tight_layout()
    out = run_dir / "metrics.png"
    fig.savefig(out, dpi=90)
    return out


MAX_OVERLAY = 10  # newest runs per comparison plot: more lines are unreadable


def plot_comparisons(root: Path, runs: list[Path]) -> list[Path]:
    """Overlay each scalar that at least two runs log (the newest ``MAX_OVERLAY``); one PNG each."""
    by_key: dict[str, list[tuple[float, str, list, list]]] = {}
    for run in runs:
        mtime = (run / "metrics.jsonl").stat().st_mtime
        for key, (xs, ys) in _series(read_metrics(run)).items():
            by_key.setdefault(key, []).append((mtime, str(run.relative_to(root)), xs, ys))
    outs = []
    for key in sorted(k for k, v in by_key.items() if len(v) >= 2)[:MAX_PANELS]:
        fig = Figure(figsize=(10, 4))
        ax = fig.subplots()
        for _, name, xs, ys in sorted(by_key[key])[-MAX_OVERLAY:]:
            ax.plot(xs, ys, label=name, lw=1.2)
        ax.set_title(f"{key} (newest {min(len(by_key[key]), MAX_OVERLAY)} of {len(by_key[key])} runs)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in key)
        out = root / f"compare_{safe}.png"
        fig.savefig(out, dpi=90)
        outs.append(out)
    return outs


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v) if not isinstance(v, (dict, list)) else json.dumps(v)


def _progress_section(repo: Path, root: Path) -> list[str]:
    """The learner's progress chart and table (``shared.progress``), when a path is chosen."""
    from shared.curriculum import CurriculumError
    from shared.plan import PlanError
    from shared.progress import progress

    try:
        text, _ = progress(repo, runs=root)
    except PlanError:
        return ["<h2>Your progress</h2><p>No study path chosen yet: <code>make path WEEKS=8|12|16"
                "</code>, then <code>make progress</code>.</p>"]
    except CurriculumError:
        return []
    return ["<h2>Your progress</h2><img src='progress.png'>",
            f"<pre>{html.escape(text)}</pre>"]


def build(root: str | Path = "runs", repo: str | Path | None = None) -> Path:
    """Render every run and benchmark under ``root``; return the index.html path. With
    ``repo`` (the repository root), the learner's progress against their path comes first."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    runs = list_runs(root)
    parts = ["<!doctype html><meta charset='utf-8'><title>nanochat dashboard</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
             "font-size:13px}img{max-width:100%}details{margin:.3em 0}</style>",
             f"<h1>nanochat dashboard</h1><p>{len(runs)} runs under <code>{html.escape(str(root))}</code>"
             "</p>"]
    if repo is not None:
        parts += _progress_section(Path(repo), root)
    benches = load_benchmarks(root)
    if benches:
        parts.append("<h2>Benchmarks</h2>")
        for b in benches:
            met = b.get("target_met")
            flag = "" if met is None else (" &#10003; target met" if met else " &#10007; target missed")
            parts.append(f"<h3>{html.escape(b.get('name', '?'))}{flag}</h3>"
                         f"<p>{html.escape(str(b.get('time', '')))}</p>")
            if isinstance(b.get("summary"), dict):
                parts.append(_table([b["summary"]]))
            if isinstance(b.get("rows"), list):
                parts.append(_table([r for r in b["rows"] if isinstance(r, dict)]))
    comps = plot_comparisons(root, runs)
    if comps:
        parts.append("<h2>Across runs</h2>")
        parts += [f"<img src='{c.relative_to(root)}'>" for c in comps]
    parts.append("<h2>Runs</h2>")
    for run in runs:
        rows = read_metrics(run)
        png = plot_run(run, title=str(run.relative_to(root)))
        meta_path = run / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        last = {k: v for r in rows for k, v in r.items()}
        parts.append(f"<h3>{html.escape(str(run.relative_to(root)))}</h3>"
                     f"<p>started {html.escape(str(meta.get('started', '?')))}, {len(rows)} rows</p>")
        parts.append(_table([last]))
        if meta.get("config"):
            parts.append("<details><summary>config</summary><pre>"
                         f"{html.escape(json.dumps(meta['config'], indent=2, default=str))}</pre></details>")
        if png:
            parts.append(f"<img src='{png.relative_to(root)}'>")
    out = root / "index.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Plot every run under a runs folder into index.html.")
    ap.add_argument("root", nargs="?", default="runs", help="the runs folder (default: runs)")
    ap.add_argument("--repo", default=".", help="the repository root, for your progress (default: .)")
    args = ap.parse_args(argv)
    out = build(args.root, args.repo)
    print(f"dashboard: {len(list_runs(args.root))} runs -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
