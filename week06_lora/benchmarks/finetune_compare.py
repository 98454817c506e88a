"""Full fine-tuning vs LoRA (at 1x and 10x the full-FT learning rate) vs QLoRA, loss curves.

A char-tiny GPT is pretrained on addition (``week06_lora.finetune.pretrain``,
our stand-in for the week05 baseline), then fine-tuned on subtraction with
each method from the same starting weights and the same batches. "LoRA
Without Regret" (Thinking Machines, 2025) finds that LoRA's best learning
rate is about 10x full fine-tuning's; the LoRA-at-1x run shows why.
Reported: the final loss (mean of the last 3 logged points), the mean loss
over the run (area under the curve: how fast it learns) and the trainable
parameters per method; the curves go to ``runs/bench/week06_finetune_compare.png``.

    python week06_lora/benchmarks/finetune_compare.py [--pretrain-steps 300] [--steps 150]
"""

from __future__ import annotations

import argparse

import torch

from shared import add_threads_argument, runs_root, save_benchmark, seed_everything, set_threads
from week06_lora.finetune import FinetuneConfig, finetune, pretrain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--qlora-compute", default="auto",
                    help="QLoRA matmul dtype: bfloat16, float32, or auto (bf16 on CUDA, fp32 on CPU, "
                         "where bf16 matmuls are often ~10x slower than fp32)")
    ap.add_argument("--lr", type=float, default=1e-3, help="full fine-tuning learning rate")
    ap.add_argument("--r", type=int, default=16)
    add_threads_argument(ap)
    args = ap.parse_args()
    set_threads(args.threads)
    seed_everything(0)
    base = pretrain(steps=args.pretrain_steps)
    qc = args.qlora_compute
    if qc == "auto":
        qc = "bfloat16" if torch.cuda.is_available() else "float32"
    runs = [("full", args.lr), ("lora", args.lr), ("lora", 10 * args.lr), ("qlora", 10 * args.lr)]
    results = []
    for method, lr in runs:
        cfg = FinetuneConfig(method=method, lr=lr, steps=args.steps, r=args.r, alpha=2 * args.r,
                             qlora_compute=qc)
        out = finetune(base, cfg)
        out.pop("model")
        out["label"] = f"{method} lr={lr:g}" + (f" ({qc})" if method == "qlora" else "")
        out["final_loss"] = sum(out["losses"][-3:]) / len(out["losses"][-3:])
        out["mean_loss"] = sum(out["losses"]) / len(out["losses"])  # area under the curve: speed
        results.append(out)
        print(f"{out['label']:<18} trainable {out['trainable']:>9,}  final loss {out['final_loss']:.4f}  "
              f"mean loss {out['mean_loss']:.4f}  ({out['seconds']:.1f}s)", flush=True)
    full = results[0]["final_loss"]
    lora10, lora1, qlora = (results[2]["final_loss"], results[1]["final_loss"], results[3]["final_loss"])
    summary = {"full_final_loss": round(full, 4), "lora_1x_final_loss": round(lora1, 4),
               "lora_10x_final_loss": round(lora10, 4), "qlora_10x_final_loss": round(qlora, 4),
               "lora_10x_vs_full": round(lora10 / full, 4), "lora_10x_vs_1x": round(lora10 / lora1, 4),
               "mean_loss_full": round(results[0]["mean_loss"], 4),
               "mean_loss_lora_1x": round(results[1]["mean_loss"], 4),
               "mean_loss_lora_10x": round(results[2]["mean_loss"], 4),
               "mean_loss_qlora_10x": round(results[3]["mean_loss"], 4)}
    print()
    for k, v in summary.items():
        print(f"{k:<22} {v:.4f}")
    try:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for out in results:
            ax.plot(out["steps"], out["losses"], label=f"{out['label']} ({out['trainable']:,} trainable)")
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel("answer-token loss (nats)")
        ax.set_title("char-tiny GPT: fine-tuning from addition to subtraction")
        ax.legend()
        fig.tight_layout()
        png = runs_root() / "bench" / "week06_finetune_compare.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, dpi=120)
        print(f"plot: {png}")
    except ImportError:
        pass
    rows = [{k: v for k, v in r.items() if k != "run_dir"} for r in results]
    path = save_benchmark("week06_finetune_compare", {"rows": rows, "summary": summary,
                                                      "target_met": lora10 <= 1.1 * full and
                                                      results[2]["mean_loss"] < results[1]["mean_loss"]})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
