"""Read out and plot what each attention head looks at.

``attention_maps(model, idx)`` runs the model on ``idx`` and returns the
softmax attention weights of every layer and head, shape (L, B, H, T, T):
entry ``[l, b, h, t, s]`` is how much position t attends to position s in
head h of layer l (zero above the diagonal, rows sum to 1; a model built
with ``causal=False`` has no zeros there).
``plot_attention`` draws one layer's heads as a grid of heat maps.

Left out: attention rollout, attribution methods and interactive viewers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from week01_transformer.model import GPT


@torch.no_grad()
def attention_maps(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Per-layer, per-head attention weights (L, B, H, T, T) for ``idx`` (B, T)."""
    was_training = model.training
    model.eval()  # no dropout: the maps are the weights the model actually uses at inference
    try:
        maps = []
        x = model.embed(idx)  # (B, T, C)
        for block in model.blocks:
            h = x if getattr(block, "post_norm", False) else block.ln_1(x)  # attention's input
            q, k, _ = block.attn.split_heads(h)  # (B, H, T, hd)
            maps.append(block.attn.weights(q, k))  # (B, H, T, T)
            x = block(x)
    finally:
        model.train(was_training)
    return torch.stack(maps)  # (L, B, H, T, T)


def plot_attention(maps: torch.Tensor, tokens: Sequence[str] | None = None, layer: int = 0,
                   batch: int = 0, heads: Sequence[int] | None = None, ncols: int = 4):
    """Heat maps of ``maps[layer, batch]`` for each head; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if maps.dim() != 5:
        raise ValueError(f"maps must have shape (L, B, H, T, T), got {tuple(maps.shape)}")
    L, B, H, T, _ = maps.shape
    if not 0 <= layer < L or not 0 <= batch < B:
        raise ValueError(f"layer must be in 0..{L - 1} and batch in 0..{B - 1}, "
                         f"got layer={layer}, batch={batch}")
    heads = list(range(H)) if heads is None else list(heads)
    if tokens is not None and len(tokens) != T:
        raise ValueError(f"got {len(tokens)} token labels for a sequence of length {T}")
    ncols = max(1, min(ncols, len(heads)))
    nrows = (len(heads) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, h in zip(axes.flat, heads):
        ax.axis("on")
        ax.imshow(maps[layer, batch, h].float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"layer {layer} head {h}", fontsize=9)
        if tokens is not None and T <= 40:
            labels = [repr(t)[1:-1] for t in tokens]
            ax.set_xticks(range(T), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(T), labels, fontsize=6)
        else:
            ax.set_xlabel("key position", fontsize=8)
            ax.set_ylabel("query position", fontsize=8)
    fig.tight_layout()
    return fig
