"""The learning-forgetting frontier: LoRA of ranks 4, 16, 64 against full fine-tuning.

Biderman et al. 2024 (LoRA Learns Less and Forgets Less, arXiv:2405.09673) fine-tune on
a target domain and measure, along training, how much the target improves (learning)
and how much the source domain the base was trained on degrades (forgetting). At an
equal gain on the target, full fine-tuning forgets more than LoRA, and lower ranks
forget less still (and learn less).

``run_frontier`` trains copies of ``base_model`` on a ``target`` task, full
fine-tuning and one week06 LoRA adapter per rank (attention and MLP projections,
alpha = 2 r as in the paper), through week03's ``Trainer`` (a hook scores both tasks
every ``eval_every`` steps with week07's ``score_examples``). Each point is
``(step, gain, forgetting)``: for bits per byte, gain = base target bpb - target bpb
and forgetting = source bpb - base source bpb (for exact match the signs flip).
``forgetting_at_gain`` reads a curve at a given gain (linear interpolation), the
comparison "at equal gain"; ``plot_frontier`` draws forgetting against gain.

Left out: the paper's learning-rate sweep per method (one lr per method here, week07's:
3e-3 for adapters, 1e-3 for full fine-tuning; ``lrs`` takes several), its code and math
domains at 7B scale, and the spectral analysis of the weight perturbations.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from shared import SampledBatches
from week03_training import TrainConfig as TrainConfig3
from week03_training import Trainer
from week06_lora import default_targets, inject_lora
from week07_continual import Task, collate, lm_loss, score_examples

# ---------------------------------------------------------------- config


@dataclass
class FrontierConfig:
    ranks: tuple[int, ...] = (4, 16, 64)
    full: bool = True
    steps: int = 150
    eval_every: int = 15
    batch_size: int = 16
    lora_lr: float = 3e-3
    full_lr: float = 1e-3
    lrs: dict = field(default_factory=dict)  # method -> lr, overrides the two above
    eval_batch_size: int = 64
    seed: int = 0


def _methods(cfg: FrontierConfig) -> list[str]:
    return [f"lora r={r}" for r in cfg.ranks] + (["full"] if cfg.full else [])


# ---------------------------------------------------------------- the runs


def _score(model, task: Task, token_bytes, cfg: FrontierConfig) -> float:
    return score_examples(model, task.test, task.metric, cfg.eval_batch_size, token_bytes)


def run_frontier(base_model, target: Task, source: Task, cfg: FrontierConfig | None = None,
                 token_bytes: torch.Tensor | None = None,
                 progress: bool = True) -> dict[str, list[tuple[int, float, float]]]:
    """``{method: [(step, gain, forgetting), ...]}``, step 0 included (0, 0)."""
    cfg = cfg or FrontierConfig()
    base_t = _score(base_model, target, token_bytes, cfg)
    base_s = _score(base_model, source, token_bytes, cfg)
    sign_t = -1.0 if target.metric == "bpb" else 1.0  # gain: lower bpb / higher accuracy
    sign_s = 1.0 if source.metric == "bpb" else -1.0  # forgetting: higher bpb / lower accuracy
    curves: dict[str, list[tuple[int, float, float]]] = {}
    for method in _methods(cfg):
        torch.manual_seed(cfg.seed)
        model = copy.deepcopy(base_model)
        if method == "full":
            for p in model.parameters():
                p.requires_grad_(True)
            lr = cfg.lrs.get(method, cfg.full_lr)
        else:
            r = int(method.split("=")[1])
            inject_lora(model, targets=default_targets(model), r=r, alpha=2.0 * r,
                        adapter="frontier")
            lr = cfg.lrs.get(method, cfg.lora_lr)
        curve = [(0, 0.0, 0.0)]

        def measure(trainer, info, curve=curve, model=model):
            if trainer.step % cfg.eval_every == 0:
                t = _score(model, target, token_bytes, cfg)
                s = _score(model, source, token_bytes, cfg)
                curve.append((trainer.step, sign_t * (t - base_t), sign_s * (s - base_s)))

        params = [p for p in model.parameters() if p.requires_grad]
        tc = TrainConfig3(steps=cfg.steps, batch_size=cfg.batch_size,
                          block_size=max(len(e["ids"]) for e in target.train), optimizer="adamw",
                          lr=lr, weight_decay=0.0, betas=(0.9, 0.999), schedule="constant",
                          warmup_steps=0, grad_clip=1.0, eval_every=0, log_every=10,
                          ckpt_every=0, save_final=False, write_metrics=False,
                          progress=progress, seed=cfg.seed)
        loader = SampledBatches(target.train, cfg.batch_size, partial(collate),
                                rng=random.Random(cfg.seed))
        trainer = Trainer(model, loader, tc, loss_fn=lambda m, b: (lm_loss(m, *b), {}),
                          params=params, hooks=[measure], desc=f"frontier: {method}")
        trainer.fit()
        curves[method] = curve
    return curves


def forgetting_at_gain(curve: list[tuple[int, float, float]], gain: float) -> float:
    """The forgetting where ``curve`` first reaches ``gain`` (linear between its points);
    NaN if it never does."""
    for (_, g0, f0), (_, g1, f1) in zip(curve, curve[1:]):
        if g0 <= gain <= g1 and g1 > g0:
            return f0 + (f1 - f0) * (gain - g0) / (g1 - g0)
        if g0 == gain:
            return f0
    return float("nan")


def common_gain(curves: dict, share: float = 0.8) -> float:
    """A gain every method reaches: ``share`` of the smallest best gain."""
    return share * min(max(g for _, g, _ in c) for c in curves.values())


# ---------------------------------------------------------------- the plot


def plot_frontier(curves: dict, path=None, title: str = "learning vs forgetting",
                  units: str = "bpb"):
    """Forgetting against gain, one line per method (a dot per evaluation); saves to
    ``path`` when given; returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, c in curves.items():
        g = np.array([p[1] for p in c])
        f = np.array([p[2] for p in c])
        ax.plot(g, f, marker="o", ms=3, label=method)
    gain = common_gain(curves)
    ax.axvline(gain, color="grey", ls=":", lw=1)
    ax.set_xlabel(f"target gain ({units}, higher = learned more)")
    ax.set_ylabel(f"source forgetting ({units}, higher = forgot more)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig
