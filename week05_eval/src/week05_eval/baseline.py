"""``make baseline``: the first model of the project, trained and measured end to end.

    python -m week05_eval.baseline                      # CPU preset, ~10 minutes on 2 cores
    python -m week05_eval.baseline --preset gpt2 --device cuda       # FineWeb-EDU, ~2-3 h, 1 H100
    python -m week05_eval.baseline --smoke --data some/texts --out /tmp/b   # seconds (tests)

The pipeline, one step per week it builds on:

1. week02: a BPE tokenizer trained on the training documents of ``--data``
   (the embedded pydocs corpus by default), then ``prepare`` writes the token
   shards (train / val split by a stable hash of each document's name);
2. week04: a Llama-style model at the preset's size, and the train split of
   its synthetic tool conversations, mixed into a quarter of each batch
   (``mixture.ToolMixLoader``) so the tool tasks can be scored with and
   without tools;
3. week03: ``Trainer`` with the preset's optimizer, schedule and batch, logging
   to ``<out>/train/metrics.jsonl`` and checkpointing atomically;
4. week05: the report card (``report.make_report``): held-out bits per byte
   against the unigram baseline, the offline multiple-choice tasks against
   chance, the tool tasks with and without tools.

Everything lands in ``<out>`` (default ``runs/week05-baseline-<time>/``):
``tokenizer.json``, ``data/``, ``train/`` (metrics + checkpoints),
``report/`` (report.md, plots) and ``baseline.json``, which
``week05_eval.find_baseline()`` uses to hand the newest baseline checkpoint to
later weeks.

Left out: multi-GPU launch (week11) and hyper-parameter search; the presets
are the only knobs besides the flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from shared import load_corpus, new_run_dir, pick_device, seed_everything
from shared.checkpoint import CheckpointError
from week05_eval.loading import BASELINE_FILE, BASELINE_PREFIX
from week05_eval.report import ReportConfig, make_report

# --------------------------------------------------------------------------- presets


@dataclass
class BaselinePreset:
    """Tokenizer size, model shape (``LlamaConfig`` fields), training and evaluation settings."""

    vocab_size: int
    model: dict
    train: dict
    report: dict = field(default_factory=dict)
    data: str = "pydocs"
    data_limit: int | None = None   # documents to read from a Hugging Face corpus
    tool_rows: int = 0              # rows of each batch that are week04 tool conversations
    tool_conversations: int = 0     # conversations per kind (train split) to mix in
    about: str = ""
    # the model, by import path ("module:Class"; its ``config_class`` takes ``model``'s fields):
    # a later week trains its own architecture through the same pipeline (week08's MLA + MoE)
    model_class: str = "week04_modern_arch_tools:Llama"
    # the Trainer's loss_fn and step hooks, by import path ("" / (): week03's defaults), e.g.
    # an MoE's auxiliary losses and its load-balancing bias update
    loss_fn: str = ""
    hooks: tuple[str, ...] = ()


PRESETS: dict[str, BaselinePreset] = {
    # ~10 minutes on 2 CPU cores end to end; see the README for what it reaches
    "cpu": BaselinePreset(
        vocab_size=2048,
        model=dict(n_layer=4, n_head=4, n_kv_head=4, n_embd=128, block_size=128, mlp="relu2",
                   qk_norm=True, tie_embeddings=False, logit_softcap=15.0),
        train=dict(steps=400, batch_size=16, block_size=128, lr=4e-3, optimizer="adamw",
                   warmup_steps=20, schedule="cosine", min_lr_ratio=0.1, weight_decay=0.1,
                   eval_every=100, eval_batches=8, log_every=10, keep_last=1),
        report=dict(limit=200, gen_limit=30, max_tokens=100_000, max_new_tokens=40),
        tool_rows=4, tool_conversations=3000,
        about="4 layers x 128 wide (1.3M parameters, half of them embeddings), 400 steps x "
              "2048 tokens, 1/4 of the rows week04 tool conversations"),
    # GPT-2 small scale (124M non-embedding-ish: 12 x 768), for a GPU; pass --data fineweb-edu
    "gpt2": BaselinePreset(
        vocab_size=32768,
        model=dict(n_layer=12, n_head=12, n_kv_head=12, n_embd=768, block_size=1024,
                   mlp="relu2", qk_norm=True, tie_embeddings=False, logit_softcap=15.0),
        train=dict(steps=5000, batch_size=32, block_size=1024, grad_accum=16, lr=1e-3,
                   optimizer="muon", muon_lr=0.02, warmup_steps=200, schedule="wsd",
                   weight_decay=0.1, dtype="bf16", eval_every=250, eval_batches=20,
                   log_every=10, ckpt_every=500, keep_last=2),
        report=dict(limit=1000, gen_limit=200, max_tokens=1_000_000, batch_size=32),
        data="fineweb-edu", data_limit=3_000_000,
        tool_rows=4, tool_conversations=20_000,
        about="12 layers x 768 wide (~124M + embeddings), 5000 steps x 0.5M tokens = 2.6B tokens"),
    # seconds: the pipeline test
    "smoke": BaselinePreset(
        vocab_size=256 + 9 + 64,
        model=dict(n_layer=1, n_head=2, n_kv_head=2, n_embd=32, block_size=64),
        train=dict(steps=3, batch_size=4, block_size=32, lr=3e-3, warmup_steps=1,
                   eval_every=3, eval_batches=1, log_every=1, keep_last=1),
        report=dict(limit=4, gen_limit=2, max_tokens=512, max_new_tokens=4, tools=False),
        tool_rows=1, tool_conversations=10,
        about="a 1-layer model trained for 3 steps: checks the plumbing, measures nothing"),
}


# --------------------------------------------------------------------------- pipeline


def _log(msg: str) -> None:
    print(f"[baseline {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_baseline(preset: BaselinePreset, out: Path, data: str | None = None,
                 device: str = "cpu", seed: int = 0, steps: int | None = None,
                 progress: bool = True, workers: int = 1) -> dict:
    """Tokenizer, shards, model, training, report card; returns the ``baseline.json`` dict."""
    from shared.checkpoint import resolve
    from week02_bpe import BPETokenizer, TokenLoader, prepare, token_bytes
    from week03_training import TrainConfig, Trainer

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    data = data or preset.data
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)

    # 1. tokenizer and shards (week02)
    t0 = time.perf_counter()
    local = Path(data).exists()
    if data == "pydocs" or local:
        corpus = load_corpus(data)
        train_texts = [d.text for d in corpus.train_docs]
        _log(f"corpus {corpus.name}: {len(corpus.train_docs)} train / {len(corpus.val_docs)} val "
             f"documents, {sum(map(len, train_texts)):,} training characters")
    else:   # a Hugging Face corpus by name: the tokenizer learns from its first documents
        from week02_bpe import iter_documents
        from week02_bpe.data import parse_source
        source = parse_source(data)
        if preset.data_limit:
            source = replace(source, limit=preset.data_limit)
        train_texts = []
        for _, text in iter_documents(source):
            train_texts.append(text)
            if len(train_texts) >= 100_000:
                break
    tok_path = out / "tokenizer.json"
    tok = BPETokenizer.train(train_texts, preset.vocab_size, progress=progress)
    tok.save(tok_path)
    timings["tokenizer"] = time.perf_counter() - t0
    _log(f"tokenizer: {tok.vocab_size} tokens in {timings['tokenizer']:.0f}s -> {tok_path}")
    t0 = time.perf_counter()
    data_dir = out / "data"
    prepare(data if (data == "pydocs" or local) else source, tok, data_dir, num_workers=workers,
            progress=progress)
    index = json.loads((data_dir / "index.json").read_text())
    timings["prepare"] = time.perf_counter() - t0
    _log(f"shards: {index['splits']['train']['tokens']:,} train / "
         f"{index['splits']['val']['tokens']:,} val tokens in {timings['prepare']:.0f}s")

    # 2. model (week04's Llama unless the preset names another class)
    model_cls = resolve(preset.model_class)
    mcfg = model_cls.config_class(vocab_size=tok.vocab_size, **preset.model)
    model = model_cls(mcfg)
    n_params = sum(p.numel() for p in model.parameters())
    _log(f"model: {model_cls.__name__} {mcfg.n_layer} layers x {mcfg.n_embd}, {n_params:,} parameters")

    # 3. training (week03)
    t0 = time.perf_counter()
    tcfg = dict(preset.train)
    if steps is not None:
        tcfg["steps"] = steps
        tcfg["warmup_steps"] = min(tcfg.get("warmup_steps", 0), max(steps // 10, 0))
    tc = TrainConfig(device=str(device), seed=seed, progress=progress,
                     extra={"tokenizer": str(tok_path.resolve()),
                            "data_dir": str(data_dir.resolve()), "data_source": data,
                            "pipeline": "week05_eval.baseline"}, **tcfg)
    train_loader = TokenLoader(data_dir, tc.batch_size, tc.block_size, split="train", seed=seed,
                               device=device)
    if preset.tool_rows:
        from week04_modern_arch_tools import make_tool_dataset
        from week05_eval.mixture import ToolMixLoader
        convs = [c for kind in ("arithmetic", "string", "facts")
                 for c in make_tool_dataset(kind, preset.tool_conversations, seed=seed,
                                            split="train")]
        train_loader = ToolMixLoader(train_loader, convs, tok, preset.tool_rows, seed=seed)
        _log(f"mixing {len(convs)} week04 tool conversations (train split) into "
             f"{preset.tool_rows} of {tc.batch_size} rows per batch")
    val_loader = TokenLoader(data_dir, tc.batch_size, tc.block_size, split="val", seed=seed + 1,
                             device=device)
    trainer = Trainer(model, train_loader, tc, val_loader=val_loader,
                      loss_fn=resolve(preset.loss_fn) if preset.loss_fn else None,
                      hooks=[resolve(h) for h in preset.hooks],
                      token_bytes=token_bytes(tok), run_dir=out / "train")
    trainer.fit()
    ckpt = trainer.latest()
    timings["train"] = time.perf_counter() - t0
    _log(f"trained {tc.steps} steps in {timings['train']:.0f}s, final loss "
         f"{trainer.history[-1]:.3f} -> {ckpt}")

    # 4. report card (week05)
    t0 = time.perf_counter()
    rcfg = ReportConfig(progress=progress, **preset.report)
    results = make_report(ckpt, out=out / "report", cfg=rcfg, device=str(device),
                          runs=out.parent)
    timings["evaluate"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    summary = {
        "checkpoint": str(ckpt.relative_to(out)),
        "tokenizer": str(tok_path.relative_to(out)),
        "data": data,
        "preset": asdict(preset),
        "n_params": n_params,
        "steps": tc.steps,
        "tokens_trained": tc.steps * tc.tokens_per_step,
        "val_bpb": results["val"]["bpb"],
        "val_loss": results["val"]["loss"],
        "unigram_bpb": results["unigram"]["bpb"],
        "core": results["core"],
        "mc": results["mc"],
        "gen": results["gen"],
        "notes": results["notes"],
        "timings": timings,
        "report": str((out / "report" / "report.md").relative_to(out)),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    (out / BASELINE_FILE).write_text(json.dumps(summary, indent=2, default=str))
    return summary


def print_summary(s: dict) -> None:
    print()
    print(f"baseline: {s['n_params']:,} parameters, {s['tokens_trained']:,} tokens, "
          f"{s['timings']['total']:.0f}s total ({', '.join(f'{k} {v:.0f}s' for k, v in s['timings'].items() if k != 'total')})")
    print(f"  val bits per byte {s['val_bpb']:.4f}   (unigram baseline {s['unigram_bpb']:.4f})")
    for r in s["mc"]:
        print(f"  {r['task']:<18} acc_norm {r['acc_norm']:.3f}   (chance {r['chance']:.3f}, "
              f"centred {r['centered']:+.3f})")
    print(f"  CORE-style score {s['core']:+.4f}")
    for r in s["gen"]:
        wt = f", with tools {r['accuracy_tools']:.3f}" if "accuracy_tools" in r else ""
        print(f"  {r['task']:<18} accuracy {r['accuracy']:.3f}{wt}")
    for n in s["notes"]:
        print(f"  note: {n}")
    print(f"  report card: {s['report']}")


# --------------------------------------------------------------------------- command line


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m week05_eval.baseline",
        description="Train the baseline end to end (week02 tokenizer, week04 model, week03 "
                    "training) and write its report card.",
        epilog="presets:\n" + "\n".join(f"  {k:<6} {p.about}" for k, p in PRESETS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS),
                    help="model size and training budget (default cpu: ~10 minutes on 2 cores; "
                         "gpt2: GPT-2 124M scale for one GPU)")
    ap.add_argument("--out", default=None,
                    help="run folder for tokenizer, shards, checkpoints and report (default "
                         "runs/week05-baseline-<time>)")
    ap.add_argument("--data", default=None,
                    help="training text: 'pydocs' (the cpu preset's default, offline), a local "
                         "text file or folder, or a week02 corpus name such as 'fineweb-edu' (the "
                         "gpt2 preset's default; needs the hub)")
    ap.add_argument("--smoke", action="store_true",
                    help="a seconds-long run through the whole pipeline (the 'smoke' preset); "
                         "measures nothing")
    ap.add_argument("--steps", type=int, default=None,
                    help="override the preset's number of training steps")
    ap.add_argument("--device", default=None,
                    help="cpu, cuda, cuda:N or mps (default: the best available)")
    ap.add_argument("--seed", type=int, default=0, help="seed for init, data order and tasks")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes for tokenizing the shards (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice; 1 is faster when other "
                         "processes share the cores)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    preset = PRESETS["smoke" if args.smoke else args.preset]
    if args.steps is not None and args.steps < 1:
        print(f"error: --steps must be >= 1, got {args.steps}", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    try:
        device = pick_device(args.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.preset == "gpt2" and device.type == "cpu" and not args.smoke:
        print("warning: the gpt2 preset on a CPU takes weeks; use --device cuda, or the cpu preset",
              file=sys.stderr)
    if device.type == "cpu" and preset.train.get("dtype") == "bf16":
        preset = replace(preset, train={**preset.train, "dtype": "fp32"})
    out = Path(args.out) if args.out else new_run_dir(BASELINE_PREFIX)
    _log(f"preset {'smoke' if args.smoke else args.preset} on {device} -> {out}")
    try:
        summary = run_baseline(preset, out, data=args.data, device=str(device), seed=args.seed,
                               steps=args.steps, progress=not args.quiet, workers=args.workers)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
