"""Week 01 exercises, attention: the causal softmax attention weights.

Fill in ``attention_weights`` below, then run ``make week01-exercises`` (which runs
``pytest -p shared.exercises --exercises week01_transformer week01_transformer/tests``).
Your function replaces ``week01_transformer.attention.attention_weights`` while its tests
run. The package's ``"explicit"`` attention kernel (the model's default) is

    y = attention_weights(q, k, mask, causal, scale) @ v      # (B, H, Tq, hd)

so your weights then run inside the whole GPT: the tests compare its logits and gradients
with Hugging Face's GPT-2 on the same random weights (to 1e-5), compare the kernel with
PyTorch's fused ``scaled_dot_product_attention`` with and without masks, check that a
future token changes no earlier logit by a single bit, and read your weights back as the
model's attention maps.
"""

from __future__ import annotations

import torch


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None,
                      causal: bool = True, scale: float | None = None) -> torch.Tensor:
    """Softmax attention weights (B, H, Tq, Tk): how much each query reads each key.

    Inputs: ``q`` (B, H, Tq, hd), the queries; ``k`` (B, H, Tk, hd), the keys (as many heads
    as ``q``); ``mask``, None or a boolean tensor broadcastable to (B, H, Tq, Tk), True where
    a query may read a key; ``causal``; ``scale``, the score multiplier.

    1. Scores: ``q @ k^T * scale``, shape (B, H, Tq, Tk); ``scale`` defaults to
       ``1 / sqrt(hd)`` when None (it keeps the scores' variance near 1 whatever the head
       size, so the softmax does not saturate).
    2. Which keys each query may read:
       - a ``mask`` was given: exactly that mask (it already holds causality, so ``causal``
         is ignored);
       - no mask and ``causal``: the Tq queries are the LAST Tq of the Tk positions, so query
         i sits at position ``Tk - Tq + i`` and reads keys ``0 .. Tk - Tq + i``. With
         Tq == Tk that is the lower triangle; with one query (a decode step) it reads every
         key. ``torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)`` is this mask (make it
         on ``q.device``);
       - no mask and not ``causal``: every key.
    3. Set the scores a query may not read to ``-inf`` (``scores.masked_fill(~mask, ...)``),
       then softmax over the keys (the last dim). ``exp(-inf)`` is exactly 0, so a future
       token contributes exactly nothing, bit for bit; every row sums to 1.

    Every query may read at least one key (itself), so no row is all ``-inf``.
    """
    raise NotImplementedError("not implemented yet: attention_weights (scaled scores q k^T, "
                              "the causal or given mask as -inf, softmax over the keys)")
