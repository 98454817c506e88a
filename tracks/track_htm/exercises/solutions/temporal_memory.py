"""Worked solution: temporal memory's activate-cells step (see ../temporal_memory.py)."""

from __future__ import annotations

import numpy as np


def activate_cells(active_cols, active_segs, matching_segs, seg_cell, seg_potential, seg_count,
                   cells_per_column, rng):
    cpc = cells_per_column
    C = len(active_cols)
    active = np.zeros(C * cpc, dtype=bool)
    winners = np.zeros(C * cpc, dtype=bool)
    seg_col = lambda s: seg_cell[s] // cpc                        # noqa: E731
    correct = active_segs[active_cols[seg_col(active_segs)]]
    active[seg_cell[correct]] = winners[seg_cell[correct]] = True
    predicted = np.isin(np.arange(C), seg_col(correct))
    bursting = active_cols & ~predicted
    active |= np.repeat(bursting, cpc)
    cand = matching_segs[bursting[seg_col(matching_segs)]]
    # one key per segment: column major, then most potential, then lowest id
    order = np.lexsort((cand, -seg_potential[cand], seg_col(cand)))
    cand = cand[order]
    first = np.ones(len(cand), dtype=bool)
    first[1:] = seg_col(cand)[1:] != seg_col(cand)[:-1]
    best = cand[first]
    winners[seg_cell[best]] = True
    fresh = np.flatnonzero(bursting & ~np.isin(np.arange(C), seg_col(best)))
    noise = rng.random((len(fresh), cpc))
    counts = seg_count[fresh[:, None] * cpc + np.arange(cpc)[None, :]]    # (F, cpc)
    grow = fresh * cpc + (counts + 0.5 * noise).argmin(axis=1)
    winners[grow] = True
    return (active, winners, np.concatenate([correct, best]).astype(np.int64),
            grow.astype(np.int64), bursting)
