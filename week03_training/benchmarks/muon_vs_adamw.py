"""Muon vs AdamW: validation loss after the same number of tokens on pydocs (with a plot).

    python week03_training/benchmarks/muon_vs_adamw.py                 # CPU, about a minute
    python week03_training/benchmarks/muon_vs_adamw.py --preset 20m --steps 2000 --device cuda

All runs use the same GPT (``--preset``), the same data order, schedule
(warmup + cosine) and seed; only the optimizer differs: our AdamW on
everything (one run per lr in ``--adamw-lrs``, so AdamW is not judged at a
single, possibly poor, lr), or our Muon (lr ``--muon-lr``) on the hidden
matrices with AdamW (lr ``--lr``) on embeddings, head, norms and biases.
The data is pydocs tokenized with a BPE tokenizer trained on it (cached under
``runs/data``). The peer is the best AdamW run; the summary is the final validation
loss of each and Muon minus the best AdamW (negative: Muon is ahead). The plot goes to
``runs/bench/week03_muon_vs_adamw.png``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from shared import (
    add_threads_argument,
    read_metrics,
    runs_root,
    save_benchmark,
    seed_everything,
    set_threads,
)
from week02_bpe import TokenLoader
from week03_training import TrainConfig, Trainer
from week03_training.train import PRESETS, build_model, ensure_data, load_token_bytes


def run(optimizer: str, lr: float, args, data_dir: Path) -> tuple[list[dict], float]:
    seed_everything(0)
    train = TokenLoader(data_dir, args.batch_size, args.block_size, "train", seed=0)
    val = TokenLoader(data_dir, args.batch_size, args.block_size, "val", seed=0)
    model = build_model(args.preset, train.vocab_size, args.block_size, dropout=0.0)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, block_size=args.block_size,
                      optimizer=optimizer, lr=lr, muon_lr=args.muon_lr,
                      warmup_steps=args.steps // 20, eval_every=args.eval_every,
                      eval_batches=args.eval_batches, device=args.device, progress=False)
    run_dir = Path(tempfile.mkdtemp()) / f"{optimizer}-{lr}"
    trainer = Trainer(model, train, cfg, val_loader=val, token_bytes=load_token_bytes(data_dir),
                      run_dir=run_dir)
    t0 = time.perf_counter()
    trainer.fit()
    return read_metrics(run_dir), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=list(PRESETS), help="GPT size")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3,
                    help="AdamW lr of the Muon run (embeddings, head, norms, biases)")
    ap.add_argument("--adamw-lrs", default="3e-3,1e-2",
                    help="comma-separated lrs for the AdamW-only runs (the best one is the peer)")
    ap.add_argument("--muon-lr", type=float, default=0.02, help="Muon lr (hidden matrices)")
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--vocab-size", type=int, default=None, help="tokenizer size (preset's)")
    ap.add_argument("--device", default="cpu")
    add_threads_argument(ap)
    args = ap.parse_args()
    set_threads(args.threads)

    data_dir = ensure_data("pydocs", args.vocab_size or PRESETS[args.preset].vocab_size)
    results = {}
    plan = [("adamw", float(lr)) for lr in args.adamw_lrs.split(",")] + [("muon", args.lr)]
    for opt, lr in plan:
        name = f"adamw lr={lr:g}" if opt == "adamw" else f"muon lr={args.muon_lr:g}"
        rows, secs = run(opt, lr, args, data_dir)
        results[name] = (rows, secs)
        print(f"  {name}: final val loss {rows[-1]['val_loss']:.4f} in {secs:.1f}s", flush=True)

    tokens_per_step = args.batch_size * args.block_size
    table = []
    print(f"\n{args.preset} GPT on pydocs, {args.steps} steps x {tokens_per_step} tokens "
          f"= {args.steps * tokens_per_step:,} tokens each")
    print(f"{'optimizer':<18}{'val loss':>10}{'val bpb':>10}{'train loss':>12}{'seconds':>9}")
    for opt, (rows, secs) in results.items():
        last = rows[-1]
        table.append({"optimizer": opt, "val_loss": round(last["val_loss"], 4),
                      "val_bpb": round(last.get("val_bpb", float("nan")), 4),
                      "train_loss": round(last["loss"], 4), "seconds": round(secs, 1),
                      "tokens": args.steps * tokens_per_step})
        r = table[-1]
        print(f"{opt:<18}{r['val_loss']:>10.4f}{r['val_bpb']:>10.4f}{r['train_loss']:>12.4f}"
              f"{r['seconds']:>9.1f}")
    best_adamw = min((r for r in table if r["optimizer"].startswith("adamw")),
                     key=lambda r: r["val_loss"])
    muon = table[-1]
    diff = muon["val_loss"] - best_adamw["val_loss"]
    print(f"Muon - best AdamW ({best_adamw['optimizer']}) final val loss: {diff:+.4f} nats "
          f"({'Muon ahead' if diff < 0 else 'AdamW ahead'})")

    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for opt, (rows, _) in results.items():
        ax[0].plot([r["tokens"] for r in rows], [r["loss"] for r in rows], label=opt, alpha=0.8)
        ev = [r for r in rows if "val_loss" in r]
        ax[1].plot([r["tokens"] for r in ev], [r["val_loss"] for r in ev], "o-", label=opt)
    for a, title in zip(ax, ("train loss", "validation loss")):
        a.set_xlabel("tokens")
        a.set_ylabel("nats / token")
        a.set_title(title)
        a.legend()
    fig.suptitle(f"Muon vs AdamW, {args.preset} GPT on pydocs")
    fig.tight_layout()
    png = runs_root() / "bench" / "week03_muon_vs_adamw.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    curves = {opt: [[r["tokens"], r["val_loss"]] for r in rows if "val_loss" in r]
              for opt, (rows, _) in results.items()}
    path = save_benchmark("week03_muon_vs_adamw", {
        "rows": table, "summary": {"muon_minus_best_adamw_val_loss": round(diff, 4),
                                   "best_adamw": best_adamw["optimizer"],
                                   "preset": args.preset, "steps": args.steps,
                                   "device": args.device, "plot": str(png), "curves": curves},
        "target_met": diff <= 0})
    print(f"saved {path} and {png}")


if __name__ == "__main__":
    main()
