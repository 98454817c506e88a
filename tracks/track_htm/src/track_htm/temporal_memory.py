"""HTM temporal memory (Hawkins & Ahmad 2016), vectorised over cells and segments.

Columns of ``cells_per_column`` cells; each cell owns distal dendrite *segments*; each
segment holds up to ``max_synapses`` synapses onto other cells (presynaptic cell index +
permanence). The segment store is dense numpy: ``seg_cell (S,)`` the owning cell,
``syn_pre (S, M)`` presynaptic cells (-1 = empty slot) and ``syn_perm (S, M)``, grown by
doubling up to ``max_segments`` (then the least recently used segments are reused). A
segment's activity is one gather, ``active_cells[syn_pre]``, and a row sum.

One step, ``compute(active_columns, learn)``, given the previous step's active and winner
cells and segment activity:

1. ``activate_cells`` (a module function, the heart of the algorithm): a column with an
   active segment on some cell (a *predicted* column) activates only those cells, and they
   are its winners; an active column with no prediction *bursts*: all its cells turn on,
   and its winner is the cell with the best matching segment (most potential synapses
   onto the previous active cells), or, if none matches, the cell with the fewest segments
   (ties broken at random), which grows a new segment;
2. learning: each learning segment (the correct active ones, and the bursting columns'
   best matching or new ones) raises permanences onto previous active cells by
   ``perm_inc``, lowers the others by ``perm_dec``, and grows synapses to previous winner
   cells it lacks, up to ``new_synapses`` potential ones; matching segments in columns
   that did not become active are punished by ``predicted_segment_dec`` (the
   wrong-prediction penalty);
3. ``activate_dendrites``: count, per segment, connected (``perm >= connected_perm``) and
   potential synapses onto the new active cells; ``>= activation_threshold`` connected is
   active (its cell becomes predictive), ``>= min_threshold`` potential is matching.

Left out: apical dendrites and the per-cell segment cap (a global cap instead); a
synapse that decays to 0 is freed, and when a segment has no free slot it grows no more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from track_htm import temporal_memory as _self

__all__ = ["TMConfig", "TemporalMemory", "activate_cells"]


@dataclass
class TMConfig:
    n_columns: int = 2048
    cells_per_column: int = 32
    activation_threshold: int = 13
    min_threshold: int = 10
    new_synapses: int = 20            # potential synapses a learning segment grows up to
    max_synapses: int = 32            # slots per segment
    initial_perm: float = 0.21
    connected_perm: float = 0.5
    perm_inc: float = 0.1
    perm_dec: float = 0.1
    predicted_segment_dec: float = 0.005  # punishment: 0 keeps A B C predicting Y; more forgets (README)
    max_segments: int = 1 << 17
    seed: int = 0

    @property
    def n_cells(self) -> int:
        return self.n_columns * self.cells_per_column

    @classmethod
    def preset(cls, name: str, **overrides) -> TMConfig:
        base = {"tiny": dict(n_columns=1024, cells_per_column=8, activation_threshold=10,
                             min_threshold=7, new_synapses=16, max_synapses=32),
                "full": dict(n_columns=2048, cells_per_column=32)}
        if name not in base:
            raise ValueError(f"unknown preset {name!r}; valid: {sorted(base)}")
        return cls(**{**base[name], **overrides})


# --------------------------------------------------------------------------- step 1


def activate_cells(active_cols: np.ndarray, active_segs: np.ndarray, matching_segs: np.ndarray,
                   seg_cell: np.ndarray, seg_potential: np.ndarray, seg_count: np.ndarray,
                   cells_per_column: int, rng: np.random.Generator):
    """Which cells fire, which win, and which segments learn.

    active_cols (C,) bool: this step's active columns. active_segs, matching_segs: int
    arrays of the segments active / matching after the previous step. seg_cell (S,): the
    cell of each segment. seg_potential (S,): its count of potential synapses onto the
    previous active cells. seg_count (n_cells,): segments per cell. Returns
    ``(active_cells bool (n_cells,), winner_cells bool (n_cells,), learn_segs int (L,),
    grow_cells int (G,), bursting bool (C,))``: the segments to reinforce (the active
    segments of active columns, then each bursting column's best matching segment) and the
    cells that get a new segment (bursting columns with no matching segment).
    """
    C, cpc = len(active_cols), cells_per_column
    n_cells = C * cpc
    active_cells = np.zeros(n_cells, dtype=bool)
    winners = np.zeros(n_cells, dtype=bool)
    # predicted columns: an active segment in an active column
    a_cells = seg_cell[active_segs]
    correct = active_segs[active_cols[a_cells // cpc]]
    active_cells[seg_cell[correct]] = True
    winners[seg_cell[correct]] = True
    predicted_cols = np.zeros(C, dtype=bool)
    predicted_cols[seg_cell[correct] // cpc] = True
    # bursting columns: every cell on
    bursting = active_cols & ~predicted_cols
    burst_cols = np.flatnonzero(bursting)
    active_cells.reshape(C, cpc)[burst_cols] = True
    # best matching segment per bursting column (most potential synapses, ties: lower index)
    m = matching_segs[bursting[seg_cell[matching_segs] // cpc]]
    order = np.lexsort((m, -seg_potential[m], seg_cell[m] // cpc))
    m = m[order]
    _, first = np.unique(seg_cell[m] // cpc, return_index=True)
    best = m[first]
    winners[seg_cell[best]] = True
    # bursting columns with no matching segment: the least used cell grows a new segment
    matched = np.zeros(C, dtype=bool)
    matched[seg_cell[best] // cpc] = True
    fresh = np.flatnonzero(bursting & ~matched)
    use = seg_count.reshape(C, cpc)[fresh] + rng.random((len(fresh), cpc)) * 0.5  # (F, cpc)
    grow_cells = fresh * cpc + np.argmin(use, axis=1)
    winners[grow_cells] = True
    learn_segs = np.concatenate([correct, best]).astype(np.int64)
    return active_cells, winners, learn_segs, grow_cells.astype(np.int64), bursting


# --------------------------------------------------------------------------- the memory


class TemporalMemory:
    """``compute(active_columns, learn=True)``; then ``predicted_columns()`` for the next
    step. ``reset()`` forgets the previous step (between independent sequences)."""

    def __init__(self, cfg: TMConfig):
        self.cfg = c = cfg
        self.rng = np.random.default_rng(c.seed)
        cap = 1024
        self.seg_cell = np.full(cap, -1, dtype=np.int64)              # (S,)
        self.syn_pre = np.full((cap, c.max_synapses), -1, dtype=np.int64)   # (S, M)
        self.syn_perm = np.zeros((cap, c.max_synapses), dtype=np.float32)   # (S, M)
        self.seg_last_used = np.zeros(cap, dtype=np.int64)
        self.n_segs = 0
        self.seg_count = np.zeros(c.n_cells, dtype=np.int64)
        self.iteration = 0
        self.reset()

    # -- state
    def reset(self) -> None:
        n = self.cfg.n_cells
        self.active_cells = np.zeros(n, dtype=bool)
        self.winner_cells = np.zeros(n, dtype=bool)
        self.active_segs = np.zeros(0, dtype=np.int64)
        self.matching_segs = np.zeros(0, dtype=np.int64)
        self.seg_potential = np.zeros(len(self.seg_cell), dtype=np.int64)
        self.bursting = np.zeros(self.cfg.n_columns, dtype=bool)

    @property
    def n_synapses(self) -> int:
        """Synapses in use (each has a learned permanence): the TM's parameter count."""
        return int((self.syn_pre[:self.n_segs] >= 0).sum())

    def predictive_cells(self) -> np.ndarray:
        out = np.zeros(self.cfg.n_cells, dtype=bool)
        out[self.seg_cell[self.active_segs]] = True
        return out

    def predicted_columns(self) -> np.ndarray:
        """Columns with a predictive cell: bool (C,), the prediction for the next step."""
        return self.predictive_cells().reshape(self.cfg.n_columns, -1).any(axis=1)

    # -- one step
    def compute(self, active_columns: np.ndarray, learn: bool = True) -> np.ndarray:
        """active_columns: bool (C,) or int indices. Returns the active cells, bool (n_cells,)."""
        c = self.cfg
        cols = np.asarray(active_columns)
        if cols.dtype != bool:
            cols = np.bincount(cols.astype(np.int64), minlength=c.n_columns).astype(bool)
        if cols.shape != (c.n_columns,):
            raise ValueError(f"active_columns must have shape ({c.n_columns},), got {cols.shape}")
        prev_active, prev_winners = self.active_cells, self.winner_cells
        active, winners, learn_segs, grow_cells, bursting = _self.activate_cells(
            cols, self.active_segs, self.matching_segs, self.seg_cell, self.seg_potential,
            self.seg_count, c.cells_per_column, self.rng)
        if learn and prev_active.any():
            self._reinforce(learn_segs, prev_active)
            new = self._new_segments(grow_cells)
            learn_all = np.concatenate([learn_segs, new])
            n_pot = np.concatenate([self.seg_potential[learn_segs], np.zeros(len(new), np.int64)])
            self._grow(learn_all, c.new_synapses - n_pot, prev_winners)
            self.seg_last_used[learn_all] = self.iteration
            if c.predicted_segment_dec > 0:
                wrong = self.matching_segs[~cols[self.seg_cell[self.matching_segs] // c.cells_per_column]]
                self._reinforce(wrong, prev_active, inc=-c.predicted_segment_dec, dec=0.0)
        self.active_cells, self.winner_cells, self.bursting = active, winners, bursting
        self._activate_dendrites(active)
        self.iteration += 1
        return active

    # -- step 3
    def _activate_dendrites(self, active: np.ndarray) -> None:
        c, S = self.cfg, self.n_segs
        pre = self.syn_pre[:S]                                        # (S, M)
        on = np.append(active, False)[pre]                            # (S, M); slot -1 -> False
        connected = (on & (self.syn_perm[:S] >= c.connected_perm)).sum(axis=1)   # (S,)
        potential = (on & (self.syn_perm[:S] > 0)).sum(axis=1)                  # (S,)
        self.seg_potential = np.zeros(len(self.seg_cell), dtype=np.int64)
        self.seg_potential[:S] = potential
        alive = self.seg_cell[:S] >= 0
        self.active_segs = np.flatnonzero(alive & (connected >= c.activation_threshold))
        self.matching_segs = np.flatnonzero(alive & (potential >= c.min_threshold))

    # -- step 2: learning
    def _reinforce(self, segs: np.ndarray, prev_active: np.ndarray, inc=None, dec=None) -> None:
        if len(segs) == 0:
            return
        c = self.cfg
        inc = c.perm_inc if inc is None else inc
        dec = c.perm_dec if dec is None else dec
        pre = self.syn_pre[segs]                                      # (L, M)
        valid = pre >= 0
        on = np.append(prev_active, False)[pre]
        perm = self.syn_perm[segs] + np.where(on, inc, -dec) * valid  # (L, M)
        perm = np.clip(perm, 0.0, 1.0)
        dead = valid & (perm <= 0)                                    # decayed away: free the slot
        pre[dead] = -1
        perm[~(pre >= 0)] = 0.0
        self.syn_pre[segs], self.syn_perm[segs] = pre, perm.astype(np.float32)

    def _grow(self, segs: np.ndarray, n_grow: np.ndarray, prev_winners: np.ndarray) -> None:
        """Segment segs[i] grows up to n_grow[i] synapses to previous winner cells it lacks."""
        cand = np.flatnonzero(prev_winners)                           # (W,)
        if len(segs) == 0 or len(cand) == 0:
            return
        c = self.cfg
        pre = self.syn_pre[segs]                                      # (L, M)
        have = (pre[:, :, None] == cand[None, None, :]).any(axis=1)   # (L, W)
        prio = np.where(have, -1.0, self.rng.random(have.shape))     # random order, known last
        pick = np.argsort(-prio, axis=1)                              # (L, W) candidates, best first
        free = pre < 0
        slots = np.argsort(~free, axis=1, kind="stable")              # (L, M) free slots first
        n = np.minimum.reduce([np.maximum(n_grow, 0), free.sum(1), (~have).sum(1)])  # (L,)
        J = min(pick.shape[1], slots.shape[1])
        take = np.arange(J)[None, :] < n[:, None]                     # (L, J)
        rows, js = np.nonzero(take)
        s, slot = segs[rows], slots[rows, js]
        self.syn_pre[s, slot] = cand[pick[rows, js]]
        self.syn_perm[s, slot] = c.initial_perm

    def _new_segments(self, cells: np.ndarray) -> np.ndarray:
        """Allocate one empty segment per cell; returns their indices."""
        k = len(cells)
        if k == 0:
            return np.zeros(0, dtype=np.int64)
        c = self.cfg
        while self.n_segs + k > len(self.seg_cell) and len(self.seg_cell) < c.max_segments:
            self._grow_store(min(2 * len(self.seg_cell), c.max_segments))
        n_fresh = max(0, min(k, len(self.seg_cell) - self.n_segs))
        idx = np.arange(self.n_segs, self.n_segs + n_fresh)
        self.n_segs += n_fresh
        if n_fresh < k:  # store full: reuse the least recently used segments
            used = self.seg_last_used[:self.n_segs].copy()
            used[idx] = np.iinfo(np.int64).max
            used[np.concatenate([self.active_segs, self.matching_segs])] = np.iinfo(np.int64).max
            old = np.argpartition(used, k - n_fresh)[:k - n_fresh]
            self.seg_count[self.seg_cell[old]] -= 1
            idx = np.concatenate([idx, old])
        self.seg_cell[idx] = cells
        self.syn_pre[idx] = -1
        self.syn_perm[idx] = 0.0
        self.seg_potential[idx] = 0
        self.seg_last_used[idx] = self.iteration
        np.add.at(self.seg_count, cells, 1)
        return idx

    def _grow_store(self, cap: int) -> None:
        extra = cap - len(self.seg_cell)
        M = self.cfg.max_synapses
        self.seg_cell = np.concatenate([self.seg_cell, np.full(extra, -1, np.int64)])
        self.syn_pre = np.concatenate([self.syn_pre, np.full((extra, M), -1, np.int64)])
        self.syn_perm = np.concatenate([self.syn_perm, np.zeros((extra, M), np.float32)])
        self.seg_last_used = np.concatenate([self.seg_last_used, np.zeros(extra, np.int64)])
        self.seg_potential = np.concatenate([self.seg_potential, np.zeros(extra, np.int64)])
