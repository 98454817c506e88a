"""Worked solution: the spatial pooler's inhibition and learning (see ../spatial_pooler.py)."""

from __future__ import annotations

import numpy as np


def inhibit(overlaps, k, radius=None, stimulus_threshold=1.0):
    ov = np.asarray(overlaps, dtype=np.float64)
    C = len(ov)
    idx = np.arange(C)
    if radius is None:
        winners = np.zeros(C, dtype=bool)
        winners[np.argsort(-ov, kind="stable")[:k]] = True       # stable: ties keep index order
    else:
        d = np.concatenate([np.arange(-radius, 0), np.arange(1, radius + 1)])
        j = (idx[:, None] + d[None, :]) % C                       # (C, 2r) neighbours
        better = (ov[j] > ov[:, None]) | ((ov[j] == ov[:, None]) & (j < idx[:, None]))
        winners = better.sum(axis=1) < max(1, round(k / C * (2 * radius + 1)))
    return winners & (ov >= stimulus_threshold)


def learn(perm, potential, x, active, perm_inc, perm_dec):
    step = np.where(np.asarray(x, dtype=bool)[None, :], perm_inc, -perm_dec)   # (1, N)
    moving = np.asarray(active, dtype=bool)[:, None] & potential               # (C, N)
    np.clip(perm + np.where(moving, step, 0.0), 0.0, 1.0, out=perm, casting="unsafe")
