"""Expert specialisation and routing collapse: what the routers of a trained MoE do.

- ``routing_counts(model, batches)``: how often each expert of each MoE layer is chosen
  (top-k pairs) for a list of (B, T) token batches -> (L, N) counts (read from week08's
  ``MoE.load`` after each forward);
- ``topic_routing(model, windows_by_topic, layer)``: the topic x expert table, each row the
  fraction of that topic's pairs sent to each expert (rows sum to 1);
- ``topic_specialisation(table)``: the mean over topics of KL(topic row || the mean row), in
  bits: 0 when every topic is routed alike, larger when topics prefer experts of their own;
- ``routing_entropy(load)``: the entropy in bits of the load distribution (log2 N when balanced,
  log2 k when every token goes to the same k experts: full collapse); ``max_violation`` is
  week08's MaxVio (max load / mean load - 1);
- ``LoadRecorder``: a week03 ``Trainer`` hook that stores the load per step (from week08's
  ``load_since_step``: call it before ``balance_bias_hook``, which resets it);
- plots: ``plot_topic_heatmap``, ``plot_collapse`` (matplotlib figures, PNG on request).

Left out: per-token analyses (which token types an expert takes), and routing of the
decode path (the tables are over full-sequence forwards).
"""

from __future__ import annotations

import math
import sys

import torch

from week08_sota.moe import max_violation, moe_layers

__all__ = ["routing_counts", "topic_routing", "topic_specialisation", "routing_entropy", "entropy_of", "max_violation",
           "LoadRecorder", "plot_topic_heatmap", "plot_collapse"]


# ---------------------------------------------------------------- metrics


def routing_entropy(load: torch.Tensor) -> float:
    """Entropy in bits of the distribution load / sum(load) over the N experts (0 log 0 = 0)."""
    p = load.double() / load.double().sum()
    nz = p[p > 0]
    return float(-(nz * nz.log2()).sum())


def entropy_of(load: torch.Tensor) -> float:
    """``routing_entropy`` as this module holds it now (an exercise may have replaced it)."""
    return sys.modules[__name__].routing_entropy(load)


# ---------------------------------------------------------------- routing tables


@torch.no_grad()
def routing_counts(model, batches) -> torch.Tensor:
    """Pairs per expert of each MoE layer over ``batches`` (each (B, T) token ids): (L, N)."""
    layers = moe_layers(model)
    total = torch.zeros(len(layers), layers[0].config.n_routed_experts)
    was = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
            total += torch.stack([m.load.cpu() for m in layers])
    finally:
        model.train(was)
    return total


def topic_routing(model, windows_by_topic: dict, layer: int = -1) -> tuple[list, torch.Tensor]:
    """(topics, (n_topics, N) fraction of each topic's pairs per expert in MoE layer ``layer``)."""
    topics = list(windows_by_topic)
    rows = []
    for t in topics:
        c = routing_counts(model, windows_by_topic[t])[layer]
        rows.append(c / c.sum())
    return topics, torch.stack(rows)


def topic_specialisation(table: torch.Tensor) -> float:
    """Mean over rows of KL(row || mean row) in bits; table (n_topics, N), rows summing to 1."""
    mean = table.double().mean(0, keepdim=True)                          # (1, N)
    p = table.double()
    terms = torch.where(p > 0, p * (p / mean).log2(), torch.zeros_like(p))
    return float(terms.sum(1).mean())


# ---------------------------------------------------------------- training hook


class LoadRecorder:
    """Trainer hook: appends each step's summed load (L, N) to ``loads``; returns
    ``routing_entropy`` (mean over layers) and MaxVio as metrics."""

    __name__ = "load_recorder"

    def __init__(self):
        self.loads: list[torch.Tensor] = []

    def __call__(self, trainer, info) -> dict:
        layers = moe_layers(getattr(trainer, "raw_model", trainer))
        load = torch.stack([m.load_since_step.detach().cpu().clone() for m in layers])  # (L, N)
        self.loads.append(load)
        return {"route_entropy": sum(entropy_of(r) for r in load) / len(load),
                "route_maxvio": sum(max_violation(r) for r in load) / len(load)}

    def series(self, fn) -> list[float]:
        """``fn`` of every step's load, mean over layers."""
        return [sum(fn(r) for r in load) / len(load) for load in self.loads]


# ---------------------------------------------------------------- plots


def plot_topic_heatmap(topics, table: torch.Tensor, title: str = "", path=None):
    """Topic x expert heat map (each row sums to 1); returns the figure."""
    import matplotlib.pyplot as plt

    n = table.size(1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * n, 0.8 + 0.35 * len(topics)))
    im = ax.imshow(table.numpy(), cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(n), [str(i) for i in range(n)])
    ax.set_yticks(range(len(topics)), topics)
    ax.set_xlabel("expert")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="fraction of the topic's pairs")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig


def plot_collapse(runs: dict, n_experts: int, top_k: int, path=None):
    """Per run (name -> LoadRecorder): routing entropy per step, and the final load per expert."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, rec in runs.items():
        a.plot(rec.series(entropy_of), label=name)
    a.axhline(math.log2(n_experts), ls="--", c="gray", lw=0.8)
    a.axhline(math.log2(top_k), ls=":", c="gray", lw=0.8)
    a.set_xlabel("step")
    a.set_ylabel("routing entropy (bits)")
    a.set_title(f"log2 N = {math.log2(n_experts):.0f} balanced, log2 k = {math.log2(top_k):.0f} collapsed",
                fontsize=8)
    a.legend(fontsize=7)
    width = 0.8 / max(len(runs), 1)
    for i, (name, rec) in enumerate(runs.items()):
        last = torch.stack(rec.loads[-10:]).sum(0).sum(0)                       # (N,)
        b.bar([e + i * width for e in range(n_experts)], (last / last.sum()).numpy(), width,
              label=name)
    b.set_xlabel("expert")
    b.set_ylabel("share of pairs (last 10 steps)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig
