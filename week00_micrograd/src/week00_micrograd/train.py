"""Command line for the two-moons demo: ``python -m week00_micrograd.train``.

Trains ``MLP(2, [16, 16, 1])`` (ReLU) on a generated two-moons data set with
the hinge loss and AdamW + cosine schedule (see ``moons.py``), logging every
step through ``shared.MetricsLogger`` into a new run folder
(``runs/week00-train-<time>/``, or under ``--out``), which also receives:

- ``decision_boundary.png``: the learned classifier over the plane;
- ``graph.dot`` and ``graph.png``: the expression graph of one small neuron
  (rendered by Graphviz's ``dot`` when installed, else by matplotlib).

Left out on purpose: checkpoints (the model is a few hundred numbers and
trains in seconds) and any hyper-parameter besides steps, seed, samples, lr.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from shared import MetricsLogger, new_run_dir
from week00_micrograd.moons import TrainConfig, example_graph, train_moons
from week00_micrograd.viz import draw_graph, plot_decision_boundary, to_dot

__all__ = ["main"]


# ---------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m week00_micrograd.train",
        description="Train a micrograd-style MLP on two moons; write metrics and PNGs "
                    "into a new run folder.")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps,
                        help="optimizer steps (full batch) (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed,
                        help="seed for the data set and the initial weights (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=TrainConfig.n_samples,
                        help="number of two-moons points (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr,
                        help="peak AdamW learning rate (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder in which the run folder week00-train-<time> is created "
                             "(default: $NANOCHAT_RUNS or ./runs)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.samples < 2:
        parser.error(f"--samples must be >= 2, got {args.samples}")

    cfg = TrainConfig(steps=args.steps, seed=args.seed, n_samples=args.samples, lr=args.lr)
    run_dir = new_run_dir("week00-train", root=args.out)
    with MetricsLogger(run_dir, config=asdict(cfg)) as logger:
        result = train_moons(cfg, logger, progress=not args.no_progress)
    plot_decision_boundary(result.model, result.X, result.y, run_dir / "decision_boundary.png",
                           title=f"MLP on two moons: accuracy {result.final_accuracy:.1%}")
    graph = example_graph()
    (run_dir / "graph.dot").write_text(to_dot(graph))
    renderer = draw_graph(graph, run_dir / "graph.png")
    print(f"final loss {result.losses[-1]:.4f}, accuracy {result.final_accuracy:.1%} "
          f"after {cfg.steps} steps")
    print(f"run folder: {run_dir} (decision_boundary.png, graph.dot, graph.png via {renderer})")
    return run_dir


if __name__ == "__main__":
    main()
