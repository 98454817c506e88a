"""Worked solution: packing without leaks (see ../packing.py for the exercise)."""

from __future__ import annotations

import torch

from shared import best_fit, pad_batch


def pack_documents(seqs, block_size: int, masks=None, *, pad_id: int = 0, device=None,
                   cross_targets: bool = False):
    """(x, y, segments), each (R, block_size); see ../packing.py."""
    rows = [(list(ids), [0] + [1] * (len(ids) - 1) if masks is None else list(m))
            for ids, m in zip(seqs, masks if masks is not None else [None] * len(seqs))]
    bins = best_fit([len(ids) for ids, _ in rows], block_size + 1)
    ids = [[t for i in b for t in rows[i][0]] for b in bins]
    mask = [[m for i in b for m in rows[i][1]] for b in bins]
    labels = [[k for k, i in enumerate(b) for _ in rows[i][0]] for b in bins]
    if not cross_targets:
        for lab, m in zip(labels, mask):
            for t in range(1, len(lab)):
                if lab[t] != lab[t - 1]:
                    m[t] = 0
    x, y = pad_batch(ids, mask, pad_id=pad_id, pad_to=block_size, device=device)
    seg = torch.full((len(bins), block_size), -1, dtype=torch.long)  # (R, T)
    for r, lab in enumerate(labels):
        seg[r, :len(lab) - 1] = torch.tensor(lab[:-1], dtype=torch.long)
    return x, y, seg.to(device) if device is not None else seg
