"""Week 10 exercise, adapters at serve time: every row's LoRA stack by one gather (Punica).

The adapter bank keeps every loaded adapter of a layer in two pools, ``A_pool`` (N, R, in)
and ``B_pool`` (N, out, R), with B already multiplied by the adapter's scaling, ranks padded
with zeros to R, and slot 0 all zeros ("no adapter"). A batch's plan gives each row a stack
of slots (B, S) and their weights (B, S), padded with slot 0. Because a weighted sum of
low-rank updates is itself low rank, each row's whole stack is ONE LoRA of rank S*R:

    A_row = [A_s1; A_s2; ...]            (S*R, in)   the stack's A matrices one under another
    B_row = [w1 B_s1, w2 B_s2, ...]      (out, S*R)  side by side, each scaled by its weight
    B_row A_row x = sum_j w_j B_sj A_sj x

so a forward is two batched matmuls however many distinct adapters the batch holds, where
week06's ``mixed_batch`` runs one pass per adapter.

Fill in ``gather_adapters``, then run ``make week10-exercises`` (``IMPL=solutions`` runs the
worked one). It replaces ``week10_hydra.plan.gather_adapters`` while the bank's tests run:
each row of a mixed batch equal to that row alone, to week06's LoRA layers, to PEFT's
``adapter_names`` mixed batch, and cached decoding with rows leaving the batch.
"""

from __future__ import annotations

import torch


def gather_adapters(A_pool: torch.Tensor, B_pool: torch.Tensor, slots: torch.Tensor,
                    weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (B, S*R, in), B^T (B, S*R, out)): each row's stack as one LoRA (see the module doc).

    1. A_pool[slots] is (B, S, R, in): reshape it to (B, S*R, in).
    2. B_pool[slots] is (B, S, out, R): multiply by weights[:, :, None, None] (unless
       ``weights`` is None: all 1), then swap the last two dims and reshape to
       (B, S*R, out), B^T laid out so that (x @ A^T) @ B^T is a plain batched matmul.

    Worked example: R = 1, in = out = 1, A_pool = [[[0]], [[2]], [[3]]] (slot 0 zero),
    B_pool = [[[0]], [[5]], [[7]]], slots [[1, 2]], weights [[1, 0.5]]: A = [[[2], [3]]],
    B^T = [[[5], [3.5]]], and for x = 1 the update is 2 * 5 + 3 * 3.5 = 20.5.
    """
    raise NotImplementedError("not implemented yet: gather_adapters (index the pools by slots, "
                              "weight B, lay the stack out as one rank-S*R LoRA)")
