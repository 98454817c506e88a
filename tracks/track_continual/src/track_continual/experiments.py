"""The track's measurements: every strategy on every stream, and the frontier.

    python -m track_continual.experiments --preset tiny   # seconds, the tests' size
    python -m track_continual.experiments --preset full   # the README's figures (CPU minutes)

For each stream (week07's ``skills-facts`` and ``domains``, and week12's taught facts
as ``taught``: 10 tasks of 5 facts in ``full``, the no-task-id setting) every strategy
(week07's and the track's, ``strategies.py``) runs through week07's ``run_stream`` from
the same base, and one row records ACC, BWT, FWT (week07's ``AccuracyMatrix``), the
memory the method keeps and the wall time. Then the learning-forgetting frontier
(``frontier.py``): LoRA r = 4, 16, 64 and full fine-tuning on a target far from the base's
pretraining (``arithmetic``: worked sums and products, the paper's math domain; or
``--frontier-target web_mail``, a pydocs domain close to it), forgetting measured on
held-out pydocs text of the base's own pretraining domain, over ``frontier_seeds``.

Writes ``<out>/results.md`` (the tables), ``results.json``, ``frontier.png`` and
``taught.png`` (ACC and BWT per strategy on the taught stream); ``--out`` defaults to
a fresh ``runs/track_continual-<time>/``. ``--streams`` / ``--strategies`` pick a subset;
``--only-frontier`` runs the frontier alone; ``--frontier-lr`` sets one lr for every method.

Base model: ``tiny``: a 1-layer, 32-wide week04 Llama with a 300-token BPE, trained for
a few steps by week07's ``train_tiny_base`` into ``<out>/base`` (figures meaningless);
``full``: week07's tiny base (``load_base("tiny")``: 2 layers, 128 wide, 512 tokens,
trained once and cached under ``runs/week07-tiny-base``); a GPU owner passes
``--model`` (a week05 baseline or any checkpoint ``load_base`` reads) and ``--scale``
to multiply steps and sizes.

Left out: several seeds per row (one seed; differences of a few points are noise).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shared import new_run_dir, write_json_atomic
from track_continual import strategies
from track_continual.common import arithmetic_task, make_taught_stream
from track_continual.frontier import (
    FrontierConfig,
    common_gain,
    forgetting_at_gain,
    plot_frontier,
    run_frontier,
)
from week07_continual import Task, TrainConfig, make_domains_stream, make_skills_stream
from week07_continual.models import TinyBaseConfig, load_base, train_tiny_base
from week07_continual.tasks import text_example

# ---------------------------------------------------------------- presets


@dataclass
class Preset:
    name: str
    streams: tuple[str, ...] = ("skills-facts", "domains", "taught")
    strategies: tuple[str, ...] = (*strategies.WEEK07, *strategies.TRACK)
    per_stream: dict = field(default_factory=dict)  # stream -> its strategies (else the above)
    facts_steps: int = 120  # steps per task, skills-facts
    n_facts: int = 40
    domains_steps: int = 40
    domains_sizes: tuple[int, int] = (48, 24)
    taught_steps: int = 60
    taught_tasks: int = 10
    taught_per_task: int = 5
    frontier: FrontierConfig = field(default_factory=FrontierConfig)
    frontier_windows: tuple[int, int] = (200, 40)  # target train windows, test windows
    frontier_target: str = "arithmetic"  # or "web_mail" (FRONTIER_TARGETS)
    frontier_seeds: tuple[int, ...] = (0,)
    tiny_base: TinyBaseConfig | None = None


PRESETS = {
    "tiny": Preset("tiny", strategies=("naive", "lora", "shared", *strategies.TRACK),
                   facts_steps=4, n_facts=4, domains_steps=3, domains_sizes=(6, 4),
                   taught_steps=4, taught_tasks=3, taught_per_task=2,
                   frontier=FrontierConfig(ranks=(4, 16), steps=4, eval_every=2),
                   frontier_windows=(8, 4),
                   tiny_base=TinyBaseConfig(vocab_size=300, tokenizer_chars=20_000, n_layer=1,
                                            n_embd=32, head_dim=16, block_size=128, steps=5,
                                            batch_size=4, seq_len=32)),
    # sized to finish in about half an hour of a 2-core machine shared with other jobs (README)
    "full": Preset("full", streams=("taught", "skills-facts"), facts_steps=50, n_facts=20,
                   taught_steps=20,
                   per_stream={"taught": ("naive", "lora", "shared", "ewc+shared",
                                          "replay+shared", "olora", "inflora", "ssr+shared", "pc"),
                               "skills-facts": ("naive", "ewc", "replay", "lora", "shared",
                                                "olora", "inflora", "ssr", "pc")},
                   # one lr for every method: at week07's (3e-3 adapters, 1e-3 full) the
                   # adapters' 3x lr, not their rank, decides who forgets (README)
                   frontier=FrontierConfig(steps=100, eval_every=10, lora_lr=1e-3, full_lr=1e-3),
                   frontier_windows=(200, 24), frontier_seeds=(0, 1, 2)),
}


def settings_for(preset: Preset) -> strategies.Settings:
    s = strategies.Settings()
    if preset.name == "tiny":
        s.week07.update(fisher_examples=4, replay_capacity=12)
        s.ssr = replace(s.ssr, per_task=3, capacity=12)
        s.inflora = replace(s.inflora, examples=8)
        s.pc = replace(s.pc, fisher_examples=4)
    return s


# ---------------------------------------------------------------- streams


def build(preset: Preset, name: str, tok, scale: float = 1.0):
    """``(stream, TrainConfig)`` for stream ``name`` at the preset's size."""
    def cfg(steps):
        return TrainConfig(steps_per_task=max(1, int(steps * scale)), batch_size=16, lr=1e-3,
                           lora_lr=3e-3, router_examples=24, seed=0)
    if name == "skills-facts":
        return (make_skills_stream(tok, variant="facts", n_facts=preset.n_facts),
                cfg(preset.facts_steps))
    if name == "domains":
        n_train, n_test = preset.domains_sizes
        return make_domains_stream(tok, int(n_train * scale), n_test), cfg(preset.domains_steps)
    if name == "taught":
        return (make_taught_stream(tok, preset.taught_tasks, preset.taught_per_task),
                cfg(preset.taught_steps))
    raise ValueError(f"unknown stream {name!r}; valid: skills-facts, domains, taught")


FRONTIER_TARGETS = ("arithmetic", "web_mail")


def frontier_tasks(tok, preset: Preset, target: str | None = None) -> tuple[Task, Task]:
    """(target, source): ``arithmetic`` windows (far from pydocs) or the ``web_mail`` pydocs
    domain (close to it), and held-out pydocs text outside every domain (the base's
    pretraining distribution: week07's ``pretraining_text`` rule on the validation
    documents)."""
    from shared import load_corpus
    from week07_continual.tasks import doc_group

    name = target or preset.frontier_target
    if name not in FRONTIER_TARGETS:
        raise ValueError(f"unknown frontier target {name!r}; valid: {', '.join(FRONTIER_TARGETS)}")
    n_train, n_test = preset.frontier_windows
    if name == "arithmetic":
        target = arithmetic_task(tok, n_train, n_test, seed=0)
    else:
        target = make_domains_stream(tok, n_train, n_test, groups=("web_mail",)).tasks[0]
    corpus = load_corpus("pydocs")
    text = "\n\n".join(d.text for d in corpus.val_docs if doc_group(d.name) is None)[:200_000]
    ids = tok.encode(text)
    step = max(len(ids) // n_test, 64)
    src = [text_example(tok, tok.decode(ids[s:s + 64]), 64) for s in range(0, step * n_test, step)]
    return target, Task("pydocs-other", src, src, metric="bpb")


# ---------------------------------------------------------------- the run


def _fmt(v, pct=True):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:+.1f}" if pct else f"{v:.3f}"


def table(rows: list[dict], metric: str) -> str:
    pct = metric == "exact_match"
    unit = "points" if pct else "bpb"
    out = [f"| strategy | ACC ({'%' if pct else 'bpb'}) | BWT ({unit}) | FWT ({unit}) | "
           "memory (MB) | time (s) | router |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        acc = f"{100 * r['acc']:.1f}" if pct else f"{r['acc']:.3f}"
        router = "-" if r["router_acc"] is None else f"{100 * r['router_acc']:.0f}%"
        out.append(f"| {r['strategy']} | {acc} | {_fmt(r['bwt'], pct)} | {_fmt(r['fwt'], pct)} | "
                   f"{r['extra_mb']:.2f} | {r['wall_s']:.0f} | {router} |")
    return "\n".join(out)


def plot_rows(rows: list[dict], path, title: str):
    """ACC and BWT per strategy (bars), saved to ``path``; returns the figure."""
    import matplotlib.pyplot as plt

    names = [r["strategy"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = torch.arange(len(rows)).numpy()
    ax.bar(x - 0.2, [100 * r["acc"] for r in rows], 0.4, label="ACC (%)")
    ax.bar(x + 0.2, [100 * r["bwt"] for r in rows], 0.4, label="BWT (points)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return fig


def _spread(values: list[float]) -> str:
    """``mean`` for one value, ``mean [min, max]`` for several."""
    m = sum(values) / len(values)
    return f"{m:.3f}" if len(values) == 1 else f"{m:.3f} [{min(values):.3f}, {max(values):.3f}]"


def _frontier(preset, base, tok, out, results, scale, progress, n_params,
              target_name=None, lr=None) -> list[str]:
    from week02_bpe import token_bytes

    target, source = frontier_tasks(tok, preset, target_name)
    fcfg = replace(preset.frontier, steps=max(2, int(preset.frontier.steps * scale)))
    if lr is not None:
        fcfg = replace(fcfg, lora_lr=lr, full_lr=lr)
    runs = [run_frontier(base, target, source, replace(fcfg, seed=seed), token_bytes(tok),
                         progress=progress) for seed in preset.frontier_seeds]
    gain = min(common_gain(c) for c in runs)  # a gain every method reaches in every seed
    at = {m: [forgetting_at_gain(c[m], gain) for c in runs] for m in runs[0]}
    results["frontier"] = {"target": target.name, "seeds": list(preset.frontier_seeds),
                           "curves": runs, "gain": gain, "forgetting_at_gain": at,
                           "config": asdict(fcfg)}
    plot_frontier(runs[0], out / "frontier.png",
                  f"learning vs forgetting, {target.name} ({n_params / 1e6:.2f}M model, seed "
                  f"{preset.frontier_seeds[0]})")
    what = "worked arithmetic" if target.name == "arithmetic" else f"pydocs {target.name}"
    lrs = ("one lr " + f"{fcfg.full_lr:g}" if fcfg.lora_lr == fcfg.full_lr
           else f"lr {fcfg.lora_lr:g} adapters, {fcfg.full_lr:g} full")
    fmd = [f"## learning-forgetting frontier (target: {what}, source: held-out pydocs outside "
           "every domain)", "",
           f"{fcfg.steps} steps, {lrs}, seeds {', '.join(map(str, preset.frontier_seeds))} "
           "(mean [min, max]). At a common target gain of "
           f"{gain:.3f} bpb (80% of the smallest best gain):", "",
           "| method | forgetting at that gain (bpb) | best gain (bpb) | forgetting at the end (bpb) |",
           "|---|---|---|---|"]
    for m in runs[0]:
        best = [max(g for _, g, _ in c[m]) for c in runs]
        end = [c[m][-1][2] for c in runs]
        fmd.append(f"| {m} | {_spread(at[m])} | {_spread(best)} | {_spread(end)} |")
    return fmd


def run_all(preset: Preset, out: Path, model: str = "tiny", scale: float = 1.0,
            progress: bool = True, streams=None, names=None, frontier: bool = True,
            frontier_target: str | None = None, frontier_lr: float | None = None) -> dict:
    """Every strategy on every stream, then the frontier; writes the files into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if preset.tiny_base is not None and model == "tiny":
        train_tiny_base(out / "base", preset.tiny_base, progress=False)
        base, tok, desc = load_base(str(out / "base" / "model.safetensors"), progress=False)
    else:
        base, tok, desc = load_base(model, progress=progress)
    n_params = sum(p.numel() for p in base.parameters())
    settings = settings_for(preset)
    streams = list(preset.streams if streams is None else streams)
    chosen = {sn: list(names or preset.per_stream.get(sn, preset.strategies)) for sn in streams}
    results: dict = {"preset": preset.name, "base": desc, "base_params": n_params,
                     "streams": {}, "frontier": None}
    md = [f"# track_continual results ({preset.name} preset)", "",
          f"Base: {desc}, {n_params / 1e6:.2f}M parameters.", ""]
    fmd = []
    if frontier:
        fmd = _frontier(preset, base, tok, out, results, scale, progress, n_params,
                        frontier_target, frontier_lr)
    bar = tqdm(total=sum(map(len, chosen.values())), desc="strategies", disable=not progress)
    with tempfile.TemporaryDirectory(prefix="track-continual-") as tmp:
        for sname in streams:
            stream, cfg = build(preset, sname, tok, scale)
            rows = []
            md_partial = out / "results.partial.md"
            for name in chosen[sname]:
                bar.set_postfix_str(f"{sname}: {name}")
                res = strategies.run(base, stream, name, cfg, Path(tmp) / sname / name, settings,
                                     progress=False)
                rows.append({**res.row(), "R": res.matrix.R.tolist(), "b": res.matrix.b.tolist()})
                bar.update(1)
            results["streams"][sname] = {"tasks": stream.task_names, "metric": stream.metric,
                                         "train": asdict(cfg), "rows": rows}
            md += [f"## {sname} ({len(stream.tasks)} tasks, {stream.metric}, "
                   f"{cfg.steps_per_task} steps per task)", "", table(rows, stream.metric), ""]
            md_partial.write_text("\n".join(md + fmd) + "\n", encoding="utf-8")
            if sname == "taught":
                plot_rows(rows, out / "taught.png",
                          f"taught facts, {len(stream.tasks)} tasks, no task id")
    bar.close()
    (out / "results.md").write_text("\n".join(md + fmd) + "\n", encoding="utf-8")
    write_json_atomic(out / "results.json", results)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default: a new runs/ folder)")
    ap.add_argument("--model", default="tiny", help="tiny, baseline, auto or a checkpoint path")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply steps and sizes (GPU)")
    ap.add_argument("--streams", default=None, help="comma-separated subset of the streams")
    ap.add_argument("--strategies", default=None, help="comma-separated subset of the strategies")
    ap.add_argument("--skip-frontier", action="store_true")
    ap.add_argument("--only-frontier", action="store_true", help="no streams, the frontier alone")
    ap.add_argument("--frontier-target", choices=FRONTIER_TARGETS, default=None,
                    help="the frontier's target (default: the preset's, arithmetic)")
    ap.add_argument("--frontier-lr", type=float, default=None,
                    help="one learning rate for every frontier method (default: the preset's)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out or new_run_dir("track_continual")
    def split(s):
        return [x for x in s.split(",") if x]
    if args.only_frontier and args.skip_frontier:
        ap.error("--only-frontier and --skip-frontier exclude each other")
    streams = [] if args.only_frontier else split(args.streams) if args.streams else None
    run_all(PRESETS[args.preset], out, args.model, args.scale, not args.no_progress, streams,
            split(args.strategies) if args.strategies else None, not args.skip_frontier,
            args.frontier_target, args.frontier_lr)
    print((out / "results.md").read_text(encoding="utf-8"))
    print(f"written: {out}/results.md, results.json and the figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
