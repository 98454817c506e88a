"""Tokens/s and model FLOP utilisation of a training step: tiny and ~20M GPT, fp32 vs bf16.

    python week03_training/benchmarks/throughput.py                 # CPU, a minute or two
    python week03_training/benchmarks/throughput.py --device cuda --steps 20 --batch-20m 32

Each configuration runs ``--warmup`` untimed steps, then ``--steps`` timed
optimizer steps of the week03 Trainer (our AdamW, grad clipping, schedule) on
random tokens. MFU = model FLOPs/s (``flops_per_token``: 6N + attention) over
the device's peak: the data-sheet peak of that dtype on a known GPU; on a CPU
the best measured rate of a 1024x1024 fp32 matmul, for both dtypes (a CPU
without bf16 units runs bf16 matmuls far below its fp32 rate, so dividing by
a bf16 matmul rate would flatter bf16: CPU MFU reads "fraction of this CPU's
fp32 matmul ceiling").
The peer is the same run in fp32: the table prints the bf16/fp32 ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from shared import add_threads_argument, save_benchmark, set_threads
from week03_training import TrainConfig, Trainer, measure_matmul_flops, peak_flops
from week03_training.train import PRESETS, build_model


class RandomTokens:
    """Uniform random (B, T) batches: throughput does not depend on the text."""

    def __init__(self, vocab: int, batch_size: int, block_size: int):
        self.vocab, self.B, self.T = vocab, batch_size, block_size
        self.gen = torch.Generator().manual_seed(0)

    def next_batch(self):
        t = torch.randint(0, self.vocab, (self.B, self.T + 1), generator=self.gen)
        return t[:, :-1], t[:, 1:]

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


def measure(preset: str, dtype: str, batch: int, block: int, steps: int, warmup: int,
            device: str, peak: float, tmp: str) -> dict:
    vocab = PRESETS[preset].vocab_size
    torch.manual_seed(0)
    model = build_model(preset, vocab, block, dropout=0.0)
    cfg = TrainConfig(steps=steps + warmup, batch_size=batch, block_size=block, dtype=dtype,
                      device=device, eval_every=0, progress=False, warmup_steps=0)
    trainer = Trainer(model, RandomTokens(vocab, batch, block), cfg, run_dir=tmp)
    for _ in range(warmup):
        trainer.train_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    tok_s = cfg.tokens_per_step / dt
    return {"preset": preset, "dtype": dtype, "params_M": round(sum(p.numel() for p in
            model.parameters()) / 1e6, 2), "tokens_per_step": cfg.tokens_per_step,
            "step_s": round(dt, 4), "tok_per_s": round(tok_s, 1),
            "mfu": round(trainer.flops_per_token * tok_s / peak, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--steps", type=int, default=4, help="timed steps (tiny preset)")
    ap.add_argument("--steps-20m", type=int, default=1, help="timed steps (20m preset)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--batch-tiny", type=int, default=16, help="micro-batch of the tiny preset")
    ap.add_argument("--batch-20m", type=int, default=1, help="micro-batch of the 20m preset")
    ap.add_argument("--block", type=int, default=256, help="context length for both")
    add_threads_argument(ap)
    args = ap.parse_args()
    set_threads(args.threads)
    import tempfile
    tmp = tempfile.mkdtemp()

    peaks = {"fp32": peak_flops(args.device, torch.float32),
             "bf16": peak_flops(args.device, torch.bfloat16)}
    if peaks["fp32"] is None:                      # CPU or unknown GPU: measure the fp32 ceiling
        measured = measure_matmul_flops(args.device, torch.float32)
        peaks = {"fp32": measured, "bf16": measured}
    bf16_matmul = measure_matmul_flops(args.device, torch.bfloat16, n=512, repeats=2)
    rows = []
    for preset, batch, steps in (("tiny", args.batch_tiny, args.steps),
                                 ("20m", args.batch_20m, args.steps_20m)):
        for dtype in ("fp32", "bf16"):
            rows.append(measure(preset, dtype, batch, args.block, steps, args.warmup,
                                args.device, peaks[dtype], tmp))
            print(f"  measured {preset} {dtype}: {rows[-1]['tok_per_s']:.0f} tok/s", flush=True)

    print(f"\ndevice {args.device}, threads {torch.get_num_threads()}, peak (matmul or data sheet):"
          f" fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s"
          f" (a bf16 512x512 matmul measures {bf16_matmul / 1e9:.1f} GFLOP/s here)")
    print(f"{'preset':<7}{'dtype':<6}{'params M':>9}{'tok/step':>9}{'s/step':>9}{'tok/s':>10}"
          f"{'MFU':>8}")
    for r in rows:
        print(f"{r['preset']:<7}{r['dtype']:<6}{r['params_M']:>9}{r['tokens_per_step']:>9}"
              f"{r['step_s']:>9.3f}{r['tok_per_s']:>10.0f}{r['mfu']:>8.1%}")
    summary = {}
    for preset in ("tiny", "20m"):
        a, b = (next(r for r in rows if r["preset"] == preset and r["dtype"] == d)
                for d in ("fp32", "bf16"))
        summary[f"{preset}_bf16_over_fp32_tok_s"] = round(b["tok_per_s"] / a["tok_per_s"], 3)
        print(f"{preset}: bf16 / fp32 tokens/s = {summary[f'{preset}_bf16_over_fp32_tok_s']:.2f}x")
    summary["device"] = args.device
    summary["peak_flops"] = peaks
    summary["bf16_matmul_flops"] = bf16_matmul
    path = save_benchmark("week03_throughput", {"rows": rows, "summary": summary,
                                                 "target_met": True})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
