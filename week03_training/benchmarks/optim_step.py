"""Optimizer step time: our AdamW (loop and foreach) and Muon vs torch.optim.AdamW.

    python week03_training/benchmarks/optim_step.py                  # ~20M parameters, CPU
    python week03_training/benchmarks/optim_step.py --preset tiny --repeats 200

The parameters are those of the week03 GPT preset (``--preset``, default the
~20M one) with fixed random gradients. Each optimizer takes ``--warmup``
untimed steps (state allocation) and then ``--repeats`` timed ones; the table
shows the median milliseconds per step and the ratio to
``torch.optim.AdamW(foreach=True)``, PyTorch's default on this device. The
fused kernel (``fused=True``) is measured where this PyTorch build has it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from shared import add_threads_argument, save_benchmark, set_threads
from week03_training import AdamW, Muon, muon_param_groups
from week03_training.train import PRESETS, build_model


def time_steps(opt, params, warmup: int, repeats: int, device: str) -> float:
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    for _ in range(warmup):
        opt.step()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        opt.step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="20m", choices=list(PRESETS), help="model size")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per optimizer")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    add_threads_argument(ap)
    args = ap.parse_args()
    set_threads(args.threads)

    p = PRESETS[args.preset]
    torch.manual_seed(0)
    model = build_model(args.preset, p.vocab_size, 256).to(args.device)
    params = list(model.parameters())
    for q in params:
        q.grad = torch.randn_like(q) * 1e-2
    n = sum(q.numel() for q in params)
    kw = dict(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)

    candidates = {
        "torch AdamW foreach (peer)": lambda: torch.optim.AdamW(params, foreach=True, **kw),
        "torch AdamW single-tensor": lambda: torch.optim.AdamW(params, foreach=False, **kw),
        "ours AdamW loop": lambda: AdamW(params, **kw),
        "ours AdamW foreach": lambda: AdamW(params, foreach=True, **kw),
        "ours Muon (+AdamW side)": lambda: Muon(muon_param_groups(model, adamw_lr=1e-3)),
    }
    try:
        torch.optim.AdamW(params[:1], fused=True, **kw).step()
        candidates["torch AdamW fused"] = lambda: torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError) as e:
        print(f"(torch AdamW fused=True not available here: {e})")

    rows = []
    for name, make in candidates.items():
        snapshot = [q.detach().clone() for q in params]
        ms = time_steps(make(), params, args.warmup, args.repeats, args.device)
        with torch.no_grad():
            for q, s in zip(params, snapshot):
                q.copy_(s)
        rows.append({"optimizer": name, "ms_per_step": round(ms, 3)})
        print(f"  {name}: {ms:.2f} ms", flush=True)
    peer = rows[0]["ms_per_step"]
    for r in rows:
        r["ratio_to_peer"] = round(r["ms_per_step"] / peer, 3)

    print(f"\n{args.preset} preset, {n / 1e6:.1f}M parameters, device {args.device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} steps")
    print(f"{'optimizer':<30}{'ms/step':>10}{'x peer':>9}")
    for r in rows:
        print(f"{r['optimizer']:<30}{r['ms_per_step']:>10.2f}{r['ratio_to_peer']:>9.2f}")
    ours = next(r for r in rows if r["optimizer"] == "ours AdamW foreach")
    summary = {"params_M": round(n / 1e6, 2), "device": args.device,
               "ours_foreach_over_torch_foreach": ours["ratio_to_peer"]}
    print(f"ours (foreach) / torch (foreach) = {ours['ratio_to_peer']:.2f}x")
    path = save_benchmark("week03_optim_step", {"rows": rows, "summary": summary,
                                                 # target: within 1.5x of PyTorch's default
                                                 "target_met": ours["ratio_to_peer"] <= 1.5})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
