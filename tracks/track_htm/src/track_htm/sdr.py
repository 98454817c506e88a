"""Sparse distributed representations (SDRs): the small helpers every HTM module uses.

An SDR here is a 1-D boolean numpy array (``(n,)``, a few percent of it True) or the sorted
int array of its active indices. The helpers convert between the two, measure overlap and
sparsity, and add noise by moving active bits (the robustness experiment of Hawkins &
Ahmad 2016: a pattern still matches with a good share of its bits moved).

Left out: SDR unions and the union-capacity formulas of the papers (the tests check the
properties by experiment instead).
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_dense", "to_indices", "overlap", "sparsity", "add_noise", "random_sdr"]


# --------------------------------------------------------------------------- conversions


def to_dense(indices, n: int) -> np.ndarray:
    """Active ``indices`` -> a boolean array of size ``n``."""
    out = np.zeros(n, dtype=bool)
    out[np.asarray(indices, dtype=np.int64)] = True
    return out


def to_indices(sdr: np.ndarray) -> np.ndarray:
    """A boolean SDR -> its sorted active indices (int64)."""
    return np.flatnonzero(np.asarray(sdr, dtype=bool))


# --------------------------------------------------------------------------- measures


def overlap(a: np.ndarray, b: np.ndarray) -> int:
    """Number of bits active in both boolean SDRs (``(n,)`` each)."""
    return int(np.count_nonzero(np.logical_and(a, b)))


def sparsity(sdr: np.ndarray) -> float:
    """Fraction of active bits; for a batch ``(T, n)`` the mean over rows."""
    return float(np.asarray(sdr, dtype=bool).mean())


# --------------------------------------------------------------------------- generators


def random_sdr(n: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean SDR of size ``n`` with exactly ``w`` random active bits."""
    return to_dense(rng.choice(n, size=w, replace=False), n)


def add_noise(sdr: np.ndarray, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Move ``round(frac * w)`` of the ``w`` active bits to random inactive positions
    (same sparsity, overlap with the original ``w - moved``)."""
    sdr = np.asarray(sdr, dtype=bool)
    on, off = np.flatnonzero(sdr), np.flatnonzero(~sdr)
    k = min(int(round(frac * len(on))), len(off))
    out = sdr.copy()
    out[rng.choice(on, size=k, replace=False)] = False
    out[rng.choice(off, size=k, replace=False)] = True
    return out
