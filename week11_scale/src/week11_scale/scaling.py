"""Scaling laws on this CPU: train week04's Llama at several sizes, fit L(N) = E + A * N^-alpha.

``sweep(cfg)`` trains each size of a ``ScalingConfig`` with week03's ``Trainer`` on pydocs
(tokenized by ``week03_training.train.ensure_data``, read by ``week02_bpe.TokenLoader``), each
for its own Chinchilla-style budget of ``tokens_per_param * N`` tokens under a cosine schedule
that ends with the budget, and measures the validation loss. ``fit_power_law`` fits
``L(N) = E + A * N^-alpha`` to the points; ``plot_fit`` draws them beside the slope of
Chinchilla's published law (Hoffmann et al. 2022, approach 3: E=1.69, A=406.4, alpha=0.34).

Which N: non-embedding parameters (Kaplan et al. 2020; no token embedding, no output head),
as ``week11_scale.lossfit`` explains: at these sizes a vocab-512 head is a large share of the
total and counting it would bend the curve. ``count_for_fit(model_cfg)`` is that count, and
``LossFit.n_kind`` says so, so a planner passes the right N. Chinchilla counts total parameters
and fits N and D separately; our points move N and D together (D = ratio * N), so the measured
alpha mixes both of its exponents (0.34 for N, 0.28 for D): compare slopes, not levels (another
tokenizer, another corpus, models a thousand times smaller).

    python -m week11_scale.scaling --preset cpu --out runs/week11-scaling --save-fit

Left out: the compute-optimal frontier (several budgets per size and the lower envelope L(C)):
the CPU budget allows one budget per size; a frontier needs about three. Also left out:
learning-rate tuning per size (one lr for every size), repeated seeds, and fits in D.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from datetime import date
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from week11_scale.lossfit import (
    CHINCHILLA,
    FIT_PATH,
    LossFit,
    count_for_fit,
    fit_power_law,
    load_fit,
    write_json,
)

__all__ = ["ScalingConfig", "SCALING_PRESETS", "Point", "LossFit", "sweep", "fit_power_law",
           "count_for_fit", "plot_fit", "load_fit", "load_points", "model_config", "FIT_PATH",
           "CHINCHILLA"]

# ----------------------------------------------------------------------------- config


@dataclass
class ScalingConfig:
    """One sweep: the model sizes, each size's token budget, and the shared training settings.

    ``shapes`` are (n_layer, n_embd) of week04's Llama in nanochat's flavour (ReLU^2 MLP,
    QK-norm, untied head, soft-capped logits) with heads of ``head_dim`` channels. Each size
    trains ``tokens_per_param * N`` tokens (N non-embedding, see the module docstring), at least
    ``min_steps`` steps, with warmup over ``warmup_frac`` of them and a cosine to
    ``min_lr_ratio`` at the end of its budget. The validation loss averages ``eval_batches``
    batches of the val split.
    """

    shapes: tuple[tuple[int, int], ...] = ((1, 16), (1, 32), (2, 32), (2, 48), (3, 64), (4, 64))
    head_dim: int = 16
    tokens_per_param: float = 20.0
    min_steps: int = 20
    batch_size: int = 16
    block_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.1
    schedule: str = "cosine"
    warmup_frac: float = 0.05
    min_lr_ratio: float = 0.1
    vocab_size: int = 512
    seed: int = 0
    data: str = "pydocs"
    eval_batches: int = 32
    threads: int = 1

    def __post_init__(self):
        self.shapes = tuple(tuple(int(v) for v in s) for s in self.shapes)
        problems = []
        if len(self.shapes) < 3:
            problems.append(f"need at least 3 shapes to fit a law, got {len(self.shapes)}")
        for s in self.shapes:
            if len(s) != 2 or min(s) < 1 or s[1] % self.head_dim:
                problems.append(f"shape {s} must be (n_layer >= 1, n_embd) with n_embd a "
                                f"multiple of head_dim={self.head_dim}")
        for name in ("min_steps", "batch_size", "block_size", "vocab_size", "eval_batches",
                     "threads", "head_dim"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.tokens_per_param > 0 or not self.lr > 0:
            problems.append(f"tokens_per_param and lr must be > 0, got {self.tokens_per_param}, "
                            f"{self.lr}")
        if not 0 <= self.warmup_frac < 1:
            problems.append(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if problems:
            raise ValueError("bad ScalingConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shapes"] = [list(s) for s in self.shapes]
        return d


SCALING_PRESETS: dict[str, ScalingConfig] = {
    # seconds: five very small sizes, tiny budgets (tests, notebook smoke)
    "smoke": ScalingConfig(shapes=((1, 8), (1, 16), (1, 24), (2, 24), (2, 32)), head_dim=8,
                           tokens_per_param=2.0, min_steps=10, batch_size=8, block_size=32,
                           eval_batches=8),
    # the real sweep: 3.2k..197k non-embedding parameters (1.8 decades), 20 tokens each
    "cpu": ScalingConfig(),
}


def model_config(cfg: ScalingConfig, shape: tuple[int, int], vocab_size: int | None = None):
    """week04's ``LlamaConfig`` for one (n_layer, n_embd) of the sweep."""
    from week04_modern_arch_tools import LlamaConfig
    n_layer, n_embd = shape
    return LlamaConfig(vocab_size=vocab_size or cfg.vocab_size, block_size=cfg.block_size,
                       n_layer=n_layer, n_head=n_embd // cfg.head_dim, n_embd=n_embd, mlp="relu2",
                       qk_norm=True, tie_embeddings=False, logit_softcap=15.0)


# ----------------------------------------------------------------------------- points


@dataclass
class Point:
    """One trained size: its counts, its budget and its losses."""

    n_layer: int
    n_embd: int
    n_head: int
    n_params: int                 # every parameter
    n_params_nonembed: int        # what the fit uses (count_for_fit)
    tokens: int                   # trained tokens = steps * batch_size * block_size
    steps: int
    flops: float                  # week03's flops_per_token * tokens (6N + attention, head in)
    val_loss: float               # nats per token on the val split
    train_loss: float             # mean of the last 10% of the training losses
    tokens_per_param: float
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> Point:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ----------------------------------------------------------------------------- sweep


def _steps_for(cfg: ScalingConfig, n_nonembed: float) -> int:
    return max(cfg.min_steps, math.ceil(cfg.tokens_per_param * n_nonembed
                                        / (cfg.batch_size * cfg.block_size)))


def train_one(cfg: ScalingConfig, shape: tuple[int, int], data_dir: Path) -> Point:
    """Train one size on its own budget with week03's Trainer; its validation loss at the end."""
    from shared import seed_everything
    from week02_bpe import TokenLoader
    from week03_training import TrainConfig, Trainer
    from week04_modern_arch_tools import Llama
    train = TokenLoader(data_dir, cfg.batch_size, cfg.block_size, "train", seed=cfg.seed)
    val = TokenLoader(data_dir, cfg.batch_size, cfg.block_size, "val", seed=cfg.seed)
    mcfg = model_config(cfg, shape, train.vocab_size)
    n_ne = count_for_fit(mcfg)
    steps = _steps_for(cfg, n_ne)
    tcfg = TrainConfig(steps=steps, batch_size=cfg.batch_size, block_size=cfg.block_size,
                       lr=cfg.lr, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                       warmup_steps=round(cfg.warmup_frac * steps), min_lr_ratio=cfg.min_lr_ratio,
                       seed=cfg.seed, eval_every=0, eval_batches=cfg.eval_batches,
                       save_final=False, write_metrics=False, progress=False)
    seed_everything(cfg.seed)
    model = Llama(mcfg)                                     # fresh weights from the same seed
    with tempfile.TemporaryDirectory() as run_dir:          # the Trainer writes nothing here
        trainer = Trainer(model, train, tcfg, val_loader=val, run_dir=run_dir,
                          desc=f"L{shape[0]} C{shape[1]}")
        t0 = time.perf_counter()
        history = trainer.fit()
        val_loss = trainer.evaluate()["val_loss"]
        seconds = time.perf_counter() - t0
    tail = history[-max(1, len(history) // 10):]
    tokens = steps * tcfg.tokens_per_step
    return Point(n_layer=mcfg.n_layer, n_embd=mcfg.n_embd, n_head=mcfg.n_head,
                 n_params=int(mcfg.num_params()), n_params_nonembed=int(n_ne), tokens=tokens,
                 steps=steps, flops=float(trainer.flops_per_token * tokens),
                 val_loss=float(val_loss), train_loss=float(np.mean(tail)),
                 tokens_per_param=cfg.tokens_per_param, seconds=round(seconds, 2))


def sweep(cfg: ScalingConfig, out_dir: str | os.PathLike | None = None, progress: bool = True,
          data_cache: str | os.PathLike | None = None) -> list[Point]:
    """Train every size of ``cfg`` (smallest first); writes ``points.json`` in ``out_dir``.

    ``data_cache`` is where pydocs is tokenized once (default ``<runs>/data``). Runs at
    ``cfg.threads`` torch threads and restores the previous setting afterwards."""
    from week03_training.train import ensure_data
    data_dir = ensure_data(cfg.data, cfg.vocab_size,
                           cache=Path(data_cache) if data_cache is not None else None,
                           progress=progress)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    points: list[Point] = []
    shapes = sorted(cfg.shapes, key=lambda s: count_for_fit(model_config(cfg, s)))
    try:
        bar = tqdm(shapes, desc="scaling sweep", unit="size", disable=not progress,
                   dynamic_ncols=True)
        for shape in bar:
            bar.set_postfix_str(f"L{shape[0]} C{shape[1]}")
            points.append(train_one(cfg, shape, data_dir))
            bar.set_postfix_str(f"L{shape[0]} C{shape[1]} val {points[-1].val_loss:.3f}")
    finally:
        torch.set_num_threads(old_threads)
    if out_dir is not None:
        write_json(Path(out_dir) / "points.json",
                   {"config": cfg.to_dict(), "points": [asdict(p) for p in points]})
    return points


def load_points(path: str | os.PathLike | None = None) -> list[Point]:
    """The points behind a fit file (``load_fit``'s) or in a sweep's ``points.json``."""
    path = Path(path) if path is not None else FIT_PATH
    if not path.is_file():
        return []
    return [Point.from_dict(d) for d in json.loads(path.read_text(encoding="utf-8"))["points"]]


# ----------------------------------------------------------------------------- plot


def plot_fit(points: list[Point], fit: LossFit, path: str | os.PathLike) -> Path:
    """A PNG: the points, the fitted law, and Chinchilla's alpha=0.34 as a reference slope.

    Left: loss against N. Right: the reducible loss L - E against N on log-log axes, where
    a power law is a straight line of slope -alpha; Chinchilla's line is drawn through the
    fit at the geometric middle of the sizes (another tokenizer and corpus: compare slopes)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is
    n = np.array([p.n_params_nonembed for p in points], dtype=float)
    loss = np.array([p.val_loss for p in points], dtype=float)
    grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 200)
    mid = math.sqrt(n.min() * n.max())
    a_ref = fit.A * mid ** (CHINCHILLA["alpha"] - fit.alpha)   # the same L - E at mid
    ref = a_ref * grid ** -CHINCHILLA["alpha"]
    fig = Figure(figsize=(11, 4.2))
    ax, bx = fig.subplots(1, 2)
    label = f"fit: {fit.E:.2f} + {fit.A:.3g} N^-{fit.alpha:.3f}"
    ax.plot(n, loss, "o", color="C0", label="val loss (this CPU, pydocs)")
    ax.plot(grid, fit.predict(grid), "-", color="C1", label=label)
    ax.plot(grid, fit.E + ref, "--", color="gray",
            label=f"Chinchilla slope alpha={CHINCHILLA['alpha']} through the fit")
    ax.axhline(fit.E, color="C1", lw=0.7, ls=":", label=f"E = {fit.E:.2f} (fitted floor)")
    ax.set(xscale="log", xlabel="non-embedding parameters N", ylabel="val loss (nats/token)",
           title=f"loss vs model size, {points[0].tokens_per_param:g} tokens per parameter")
    ax.legend(fontsize=8)
    red = np.clip(loss - fit.E, 1e-6, None)
    bx.loglog(n, red, "o", color="C0", label="L - E")
    bx.loglog(grid, fit.A * grid ** -fit.alpha, "-", color="C1",
              label=f"fitted alpha = {fit.alpha:.3f}")
    bx.loglog(grid, ref, "--", color="gray",
              label=f"Chinchilla alpha = {CHINCHILLA['alpha']} (Hoffmann et al. 2022)")
    bx.set(xlabel="non-embedding parameters N", ylabel="reducible loss L - E",
           title="slopes on log-log axes")
    bx.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- CLI


def table(points: list[Point], fit: LossFit | None = None) -> str:
    """A text table of the points (and the fit's prediction beside each)."""
    head = (f"{'L':>2} {'C':>4} {'N non-emb':>10} {'N total':>9} {'tokens':>10} {'steps':>6} "
            f"{'PF':>7} {'train':>6} {'val':>6}" + (f" {'fit':>6}" if fit else "") + f" {'s':>6}")
    rows = [head]
    for p in points:
        rows.append(f"{p.n_layer:>2} {p.n_embd:>4} {p.n_params_nonembed:>10,} {p.n_params:>9,} "
                    f"{p.tokens:>10,} {p.steps:>6} {p.flops / 1e15:>7.3f} {p.train_loss:>6.3f} "
                    f"{p.val_loss:>6.3f}"
                    + (f" {fit.predict(p.n_params_nonembed):>6.3f}" if fit else "")
                    + f" {p.seconds:>6.1f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m week11_scale.scaling",
                                 description="Train a scaling sweep on this CPU and fit L(N).")
    ap.add_argument("--preset", default="cpu", help=f"one of {', '.join(SCALING_PRESETS)}")
    ap.add_argument("--out", default=None, help="folder for points.json, fit.json, scaling.png "
                                                "(default <runs>/week11-scaling)")
    ap.add_argument("--threads", default=None, help="torch threads (default: the preset's, 1)")
    ap.add_argument("--save-fit", action="store_true",
                    help=f"also write the fit and points into the package ({FIT_PATH.name})")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.preset not in SCALING_PRESETS:
        print(f"error: unknown preset {args.preset!r}; valid: {', '.join(SCALING_PRESETS)}",
              file=sys.stderr)
        return 2
    cfg = ScalingConfig(**{**SCALING_PRESETS[args.preset].to_dict()})
    if args.threads is not None:
        if not args.threads.isdigit() or int(args.threads) < 1:
            print(f"error: --threads must be an integer >= 1, got {args.threads!r}",
                  file=sys.stderr)
            return 2
        cfg.threads = int(args.threads)
    from shared import runs_root
    out = Path(args.out) if args.out else runs_root() / "week11-scaling"
    t0 = time.perf_counter()
    points = sweep(cfg, out, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    command = "python -m week11_scale.scaling " + " ".join(sys.argv[1:] if argv is None else argv)
    source = {"preset": args.preset, "date": date.today().isoformat(), "command": command,
              "data": cfg.data, "vocab_size": cfg.vocab_size, "block_size": cfg.block_size,
              "tokens_per_param": cfg.tokens_per_param, "threads": cfg.threads,
              "wall_s": round(wall, 1), "sizes": len(points)}
    fit = fit_power_law([p.n_params_nonembed for p in points], [p.val_loss for p in points],
                        source=source)
    write_json(out / "fit.json", fit.to_dict())
    plot_fit(points, fit, out / "scaling.png")
    print(table(points, fit))
    print(f"fit: L(N) = {fit.E:.4f} + {fit.A:.4g} * N^-{fit.alpha:.4f}  (N {fit.n_kind}, "
          f"{fit.n_points} sizes, {wall:.0f} s); Chinchilla alpha = {CHINCHILLA['alpha']}")
    print(f"wrote {out / 'points.json'}, {out / 'fit.json'}, {out / 'scaling.png'}")
    if args.save_fit:
        write_json(FIT_PATH, {**fit.to_dict(), "points": [asdict(p) for p in points]})
        print(f"wrote {FIT_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
