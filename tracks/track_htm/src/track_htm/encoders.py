"""SDR encoders: a scalar, a cyclic quantity (time of day, day of week), a category, and a
date made of cyclic parts; each turns a value into a boolean SDR of fixed size and sparsity.

The properties the HTM papers ask of an encoder: nearby values share bits (overlap falls
with distance), far values share none, every output has the same number of active bits,
and the same value always gives the same SDR. ``encode_many`` does a whole array at once
(one fancy-index, no Python loop over values).

- ``ScalarEncoder(n, w, minval, maxval)``: a run of ``w`` consecutive bits whose start moves
  with the value over ``n - w + 1`` positions; values outside are clipped.
- ``CyclicEncoder(n, w, period)``: the run wraps round, so ``period`` and 0 are the same.
- ``CategoryEncoder(categories, w)``: ``w`` bits of its own per category (no overlap).
- ``DateEncoder(...)``: time of day and day of week as cyclic encoders, and a weekend bit
  block, concatenated (NAB's HTM detector uses time of day and weekend).

Left out: the random distributed scalar encoder (RDSE) and the log encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ScalarEncoder", "CyclicEncoder", "CategoryEncoder", "DateEncoder", "concat"]


def _runs(starts: np.ndarray, w: int, n: int, wrap: bool) -> np.ndarray:
    """Boolean (T, n): row t has bits starts[t] .. starts[t] + w - 1 set (mod n if wrap)."""
    cols = starts[:, None] + np.arange(w)[None, :]            # (T, w)
    if wrap:
        cols %= n
    out = np.zeros((len(starts), n), dtype=bool)
    out[np.arange(len(starts))[:, None], cols] = True
    return out


def concat(*sdrs: np.ndarray) -> np.ndarray:
    """Join SDRs along their last axis (a multi-field encoding)."""
    return np.concatenate(sdrs, axis=-1)


# --------------------------------------------------------------------------- scalar


@dataclass
class ScalarEncoder:
    n: int = 400
    w: int = 21
    minval: float = 0.0
    maxval: float = 1.0

    def __post_init__(self):
        if not 0 < self.w < self.n:
            raise ValueError(f"need 0 < w < n, got w={self.w}, n={self.n}")
        if not self.maxval > self.minval:
            raise ValueError(f"need maxval > minval, got {self.minval}, {self.maxval}")

    @property
    def buckets(self) -> int:
        return self.n - self.w + 1

    def bucket(self, values) -> np.ndarray:
        """The start position of each value's run (int64, clipped to the range)."""
        v = np.clip(np.asarray(values, dtype=np.float64), self.minval, self.maxval)
        return np.rint((v - self.minval) / (self.maxval - self.minval) * (self.buckets - 1)).astype(np.int64)

    def encode_many(self, values) -> np.ndarray:
        """(T,) values -> (T, n) boolean SDRs."""
        return _runs(self.bucket(np.atleast_1d(values)), self.w, self.n, wrap=False)

    def encode(self, value: float) -> np.ndarray:
        return self.encode_many([value])[0]


# --------------------------------------------------------------------------- cyclic


@dataclass
class CyclicEncoder:
    n: int = 48
    w: int = 9
    period: float = 24.0

    def __post_init__(self):
        if not 0 < self.w < self.n:
            raise ValueError(f"need 0 < w < n, got w={self.w}, n={self.n}")

    def encode_many(self, values) -> np.ndarray:
        v = np.mod(np.asarray(np.atleast_1d(values), dtype=np.float64), self.period)
        starts = np.floor(v / self.period * self.n).astype(np.int64) % self.n
        return _runs(starts, self.w, self.n, wrap=True)

    def encode(self, value: float) -> np.ndarray:
        return self.encode_many([value])[0]


# --------------------------------------------------------------------------- category


class CategoryEncoder:
    """``w`` private bits per category; an unknown category raises (no silent bucket)."""

    def __init__(self, categories, w: int = 11):
        self.categories = list(categories)
        if len(set(self.categories)) != len(self.categories) or not self.categories:
            raise ValueError(f"categories must be distinct and non-empty, got {self.categories}")
        self.index = {c: i for i, c in enumerate(self.categories)}
        self.w, self.n = int(w), int(w) * len(self.categories)

    def encode_many(self, values) -> np.ndarray:
        try:
            idx = np.array([self.index[v] for v in values], dtype=np.int64)
        except KeyError as e:
            raise KeyError(f"unknown category {e.args[0]!r}; known: {self.categories}") from None
        return _runs(idx * self.w, self.w, self.n, wrap=False)

    def encode(self, value) -> np.ndarray:
        return self.encode_many([value])[0]


# --------------------------------------------------------------------------- date


@dataclass
class DateEncoder:
    """Time of day (cyclic, 24 h), day of week (cyclic, 7 days) and a weekend flag."""

    tod_n: int = 48
    tod_w: int = 9
    dow_n: int = 21
    dow_w: int = 3
    weekend_w: int = 5

    def __post_init__(self):
        self.tod = CyclicEncoder(self.tod_n, self.tod_w, 24.0)
        self.dow = CyclicEncoder(self.dow_n, self.dow_w, 7.0)
        self.weekend = CategoryEncoder([False, True], self.weekend_w)
        self.n = self.tod_n + self.dow_n + self.weekend.n

    def encode_many(self, timestamps) -> np.ndarray:
        """(T,) numpy datetime64 -> (T, n) boolean SDRs."""
        ts = np.asarray(timestamps, dtype="datetime64[s]")
        days = ts.astype("datetime64[D]")
        hours = (ts - days).astype(np.int64) / 3600.0
        dow = (days.astype(np.int64) + 3) % 7                 # 1970-01-01 was a Thursday: Monday = 0
        return concat(self.tod.encode_many(hours), self.dow.encode_many(dow),
                      self.weekend.encode_many(list(dow >= 5)))

    def encode(self, timestamp) -> np.ndarray:
        return self.encode_many([timestamp])[0]
