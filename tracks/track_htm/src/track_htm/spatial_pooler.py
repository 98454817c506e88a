"""The HTM spatial pooler (Cui, Ahmad & Hawkins 2017), vectorised over columns.

Each of ``n_columns`` columns has a *potential pool*: a random ``potential_pct`` share of
the input bits within ``potential_radius`` of its centre (all of them when the radius is
None). Each potential synapse has a permanence in [0, 1]; it is *connected* when the
permanence is >= ``connected_perm``. One step (``SpatialPooler.compute``):

1. overlap: connected synapses onto active input bits, per column,    ``(C, N) @ (N,) -> (C,)``;
2. boost: multiply by each column's boost factor;
3. inhibition (``inhibit``, a module function): the ``k = sparsity * C`` best columns win
   (global), or a column wins when fewer than ``sparsity * (2r + 1)`` of its 1-D
   neighbours within ``inhibition_radius`` beat it (local); ties go to the lower index;
   a column needs at least ``stimulus_threshold`` overlap;
4. learning (``learn``, a module function), for the winners only: permanences onto active
   inputs +``perm_inc``, onto inactive ones -``perm_dec``, inside the potential pool;
5. homeostasis: the active duty cycle (an exponential moving average over
   ``duty_cycle_period`` steps) and boost = ``exp(-boost_strength * (duty - mean duty))``
   (mean over all columns, or over each column's neighbourhood when inhibition is local);
   a column whose overlap duty cycle falls below ``min_pct_overlap`` of the best raises all
   its permanences by a tenth of ``connected_perm`` (so a dead column can come back).

Left out: 2-D topology (columns and inputs are 1-D here) and the adaptive inhibition
radius of the reference implementation (the radius is a fixed setting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from track_htm import spatial_pooler as _self

__all__ = ["SPConfig", "SpatialPooler", "inhibit", "learn"]


@dataclass
class SPConfig:
    input_size: int = 400
    n_columns: int = 2048
    sparsity: float = 0.02              # target share of active columns
    potential_pct: float = 0.85
    potential_radius: int | None = None  # None: the whole input (global potential pools)
    connected_perm: float = 0.2
    perm_inc: float = 0.05
    perm_dec: float = 0.008
    stimulus_threshold: int = 1
    global_inhibition: bool = True
    inhibition_radius: int = 32          # used when global_inhibition is False
    boost_strength: float = 0.0          # 0: no boosting (NAB's detector runs without)
    duty_cycle_period: int = 1000
    min_pct_overlap: float = 0.001
    seed: int = 0

    @property
    def k(self) -> int:
        return max(1, int(round(self.sparsity * self.n_columns)))

    @classmethod
    def preset(cls, name: str, **overrides) -> SPConfig:
        base = {"tiny": dict(n_columns=1024, duty_cycle_period=200),
                "full": dict(n_columns=2048, duty_cycle_period=1000)}
        if name not in base:
            raise ValueError(f"unknown preset {name!r}; valid: {sorted(base)}")
        return cls(**{**base[name], **overrides})


# --------------------------------------------------------------------------- the steps


def inhibit(overlaps: np.ndarray, k: int, radius: int | None = None,
            stimulus_threshold: float = 1.0) -> np.ndarray:
    """Winning columns for boosted ``overlaps`` (C,) -> boolean (C,).

    Global (``radius`` None): the ``k`` largest, ties to the lower index. Local: column i
    wins when fewer than ``round(k / C * (2 * radius + 1))`` (at least 1) of the columns
    within ``radius`` of it on a ring beat it (greater overlap, or equal with a lower
    index). Either way a winner needs ``overlaps >= stimulus_threshold``.
    """
    C = len(overlaps)
    order = np.lexsort((np.arange(C), -overlaps))             # best first, ties: lower index
    rank = np.empty(C, dtype=np.int64)
    rank[order] = np.arange(C)                                # 0 = best column
    if radius is None:
        win = rank < k
    else:
        k_local = max(1, int(round(k / C * (2 * radius + 1))))
        offsets = np.arange(-radius, radius + 1)
        offsets = offsets[offsets != 0]
        neigh = (np.arange(C)[:, None] + offsets[None, :]) % C  # (C, 2r)
        beaten_by = (rank[neigh] < rank[:, None]).sum(axis=1)  # (C,)
        win = beaten_by < k_local
    return win & (overlaps >= stimulus_threshold)


def learn(perm: np.ndarray, potential: np.ndarray, x: np.ndarray, active: np.ndarray,
          perm_inc: float, perm_dec: float) -> None:
    """Hebbian update in place: rows ``active`` (bool (C,)) of ``perm`` (C, N) move up by
    ``perm_inc`` where ``x`` (bool (N,)) is on and down by ``perm_dec`` where it is off,
    only where ``potential`` (C, N); the result is clipped to [0, 1]."""
    rows = np.flatnonzero(active)
    delta = np.where(x, perm_inc, -perm_dec).astype(perm.dtype)     # (N,)
    perm[rows] = np.clip(perm[rows] + delta[None, :] * potential[rows], 0.0, 1.0)


# --------------------------------------------------------------------------- the pooler


class SpatialPooler:
    """``compute(x, learn=True) -> bool (n_columns,)``; see the module docstring."""

    def __init__(self, cfg: SPConfig):
        self.cfg = c = cfg
        rng = self.rng = np.random.default_rng(c.seed)
        C, N = c.n_columns, c.input_size
        if c.potential_radius is None:
            in_range = np.ones((C, N), dtype=bool)
        else:
            centres = (np.arange(C) + 0.5) * N / C                      # (C,)
            dist = np.abs(np.arange(N)[None, :] - centres[:, None])      # (C, N)
            in_range = np.minimum(dist, N - dist) <= c.potential_radius
        self.potential = in_range & (rng.random((C, N)) < c.potential_pct)  # (C, N)
        # initial permanences: around the threshold, so about half start connected
        init = c.connected_perm + (rng.random((C, N)) - 0.5) * 0.2
        self.perm = np.where(self.potential, np.clip(init, 0, 1), 0.0).astype(np.float32)
        self.active_duty = np.full(C, c.sparsity, dtype=np.float64)
        self.overlap_duty = np.zeros(C, dtype=np.float64)
        self.boost = np.ones(C, dtype=np.float64)
        self.iteration = 0

    @property
    def n_synapses(self) -> int:
        """Potential synapses (each has a learned permanence): the SP's parameter count."""
        return int(self.potential.sum())

    def overlaps(self, x: np.ndarray) -> np.ndarray:
        connected = (self.perm >= self.cfg.connected_perm)                  # (C, N)
        return connected.astype(np.float32) @ np.asarray(x, dtype=np.float32)  # (C,)

    def compute(self, x: np.ndarray, learn: bool = True) -> np.ndarray:
        c = self.cfg
        x = np.asarray(x, dtype=bool)
        if x.shape != (c.input_size,):
            raise ValueError(f"input must have shape ({c.input_size},), got {x.shape}")
        ov = self.overlaps(x)
        boosted = ov * self.boost if learn else ov
        radius = None if c.global_inhibition else c.inhibition_radius
        active = _self.inhibit(boosted, c.k, radius, c.stimulus_threshold)
        if learn:
            _self.learn(self.perm, self.potential, x, active, c.perm_inc, c.perm_dec)
            self._homeostasis(active, ov)
        self.iteration += 1
        return active

    def _homeostasis(self, active: np.ndarray, ov: np.ndarray) -> None:
        c = self.cfg
        p = min(c.duty_cycle_period, self.iteration + 1)
        self.active_duty += (active - self.active_duty) / p
        self.overlap_duty += ((ov >= c.stimulus_threshold) - self.overlap_duty) / p
        if c.global_inhibition:
            target = self.active_duty.mean()
        else:
            r = c.inhibition_radius
            kern = np.ones(2 * r + 1) / (2 * r + 1)
            padded = np.concatenate([self.active_duty[-r:], self.active_duty, self.active_duty[:r]])
            target = np.convolve(padded, kern, mode="valid")                # (C,)
        self.boost = np.exp(-c.boost_strength * (self.active_duty - target))
        weak = self.overlap_duty < c.min_pct_overlap * self.overlap_duty.max()
        if weak.any():
            self.perm[weak] = np.where(self.potential[weak],
                                       np.minimum(self.perm[weak] + 0.1 * c.connected_perm, 1), 0)
