"""Benchmark: our engine vs PyPI ``micrograd`` (Karpathy, 0.1.0) on one MLP training run.

Both engines train the same ``MLP(2, [16, 16, 1])`` (ReLU) from the same initial
weights (ours are copied into theirs) on the same 100 two-moons points, with
micrograd's own demo loss (mean SVM hinge + 1e-4 * L2) and plain SGD with its
demo's decaying learning rate, full batch. Three rows:

- ``micrograd``: the peer;
- ``ours (per-op graph)``: our ``Value`` with micrograd's graph shape
  (one ``*`` and one ``+`` node per weight), so only the engine differs;
- ``ours (MLP, fused dot)``: our ``nn.MLP``, one ``dot`` node per neuron.

It prints seconds per step (median over steps, robust to a busy machine),
the speed ratios, and the largest loss difference from micrograd over the run
(target: ours >= 3x faster, loss curves equal to 1e-9).

Run: ``make week00-bench`` or ``.venv/bin/python week00_micrograd/benchmarks/engine_vs_micrograd.py``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from micrograd import nn as mg_nn

from shared import save_benchmark
from week00_micrograd import MLP, SGD, Value, make_moons, vsum

TARGET_SPEEDUP = 3.0
TARGET_LOSS_DIFF = 1e-9
ALPHA = 1e-4  # L2 strength of micrograd's demo


# ---------------------------------------------------------------------------
# the three training runs


def lr_at(step: int, steps: int) -> float:
    return 1.0 - 0.9 * step / steps  # micrograd demo's schedule


def run_micrograd(model, X, y, steps: int) -> tuple[list[float], list[float]]:
    losses, times = [], []
    for k in range(steps):
        t0 = time.perf_counter()
        scores = [model(x) for x in X]
        margins = [(1 + -yi * s).relu() for yi, s in zip(y, scores)]
        data_loss = sum(margins) * (1.0 / len(margins))
        reg_loss = ALPHA * sum(p * p for p in model.parameters())
        loss = data_loss + reg_loss
        model.zero_grad()
        loss.backward()
        lr = lr_at(k, steps)
        for p in model.parameters():
            p.data -= lr * p.grad
        times.append(time.perf_counter() - t0)
        losses.append(loss.data)
    return losses, times


def forward_per_op(model: MLP, x: list) -> Value:
    """Our Values in micrograd's graph shape: sum((w * x ...), b), one node per op."""
    for layer in model.layers:
        out = []
        for n in layer.neurons:
            act = sum((wi * xi for wi, xi in zip(n.w, x)), n.b)
            out.append(act.relu() if n.activation == "relu" else act)
        x = out
    return x[0]


def run_ours(model: MLP, X, y, steps: int, fused: bool) -> tuple[list[float], list[float]]:
    opt = SGD(model.parameters(), lr=1.0)
    params = model.parameters()
    forward = model if fused else (lambda x: forward_per_op(model, x))
    losses, times = [], []
    for k in range(steps):
        t0 = time.perf_counter()
        scores = [forward(x) for x in X]
        margins = [(1 + -yi * s).relu() for yi, s in zip(y, scores)]
        data_loss = vsum(margins) * (1.0 / len(margins))
        reg_loss = ALPHA * vsum(p * p for p in params)
        loss = data_loss + reg_loss
        opt.zero_grad()
        loss.backward()
        opt.lr = lr_at(k, steps)
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.data)
    return losses, times


def fresh_models(seed: int):
    ours = MLP(2, [16, 16, 1], rng=random.Random(seed))
    theirs = mg_nn.MLP(2, [16, 16, 1])
    assert len(theirs.parameters()) == len(ours.parameters())
    for p_theirs, p_ours in zip(theirs.parameters(), ours.parameters()):
        p_theirs.data = p_ours.data
    return ours, theirs


# ---------------------------------------------------------------------------
# main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="SGD steps per engine (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=100, help="two-moons points (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data and weight seed (default: %(default)s)")
    args = parser.parse_args()

    X, y = make_moons(args.samples, noise=0.1, seed=args.seed)
    ours_fused, theirs = fresh_models(args.seed)
    ours_per_op, _ = fresh_models(args.seed)

    ref_losses, ref_times = run_micrograd(theirs, X, y, args.steps)
    runs = {
        "micrograd 0.1.0 (PyPI)": (ref_losses, ref_times),
        "ours (per-op graph)": run_ours(ours_per_op, X, y, args.steps, fused=False),
        "ours (MLP, fused dot)": run_ours(ours_fused, X, y, args.steps, fused=True),
    }
    ref_step = statistics.median(ref_times)
    rows = []
    for name, (losses, times) in runs.items():
        step_s = statistics.median(times)
        rows.append({
            "engine": name,
            "s_per_step": step_s,
            "total_s": sum(times),
            "speedup_vs_micrograd": ref_step / step_s,
            "final_loss": losses[-1],
            "max_loss_diff_vs_micrograd": max(abs(a - b) for a, b in zip(losses, ref_losses)),
        })

    print(f"MLP(2,[16,16,1]) on {args.samples} two-moons points, {args.steps} full-batch SGD "
          "steps, same initial weights")
    print(f"{'engine':<24}{'s/step':>10}{'total s':>10}{'speedup':>9}{'final loss':>14}"
          f"{'max |dloss|':>13}")
    for r in rows:
        print(f"{r['engine']:<24}{r['s_per_step']:>10.4f}{r['total_s']:>10.2f}"
              f"{r['speedup_vs_micrograd']:>8.2f}x{r['final_loss']:>14.8f}"
              f"{r['max_loss_diff_vs_micrograd']:>13.2e}")
    fused, per_op = rows[2], rows[1]
    target_met = (fused["speedup_vs_micrograd"] >= TARGET_SPEEDUP
                  and max(r["max_loss_diff_vs_micrograd"] for r in rows) <= TARGET_LOSS_DIFF)
    print(f"speed ratio (ours fused / micrograd): {fused['speedup_vs_micrograd']:.2f}x; "
          f"per-op graph: {per_op['speedup_vs_micrograd']:.2f}x; "
          f"target >= {TARGET_SPEEDUP:g}x and |dloss| <= {TARGET_LOSS_DIFF:g}: "
          f"{'met' if target_met else 'NOT met'}")
    path = save_benchmark("week00_engine", {
        "config": vars(args),
        "rows": rows,
        "summary": {"speedup_fused": fused["speedup_vs_micrograd"],
                    "speedup_per_op": per_op["speedup_vs_micrograd"],
                    "max_loss_diff": max(r["max_loss_diff_vs_micrograd"] for r in rows)},
        "target_met": target_met,
    })
    print(f"saved {path}")


if __name__ == "__main__":
    main()
