"""Worked solutions: backward and forward transfer from the accuracy matrix (week07)."""

from __future__ import annotations

import math

import numpy as np


def bwt(self) -> float:
    """sign * mean over j < T-1 of R[T-1, j] - R[j, j]."""
    self._check_complete()
    if self.T < 2:
        return math.nan
    last, diag = self.R[-1, :-1], np.diag(self.R)[:-1]  # (T-1,) each
    return float(self.sign * (last - diag).mean())


def fwt(self) -> float:
    """sign * mean over j >= 1 of R[j-1, j] - b[j]; NaN without b."""
    self._check_complete()
    if self.T < 2 or np.isnan(self.b[1:]).any():
        return math.nan
    above = np.diag(self.R, k=1)  # (T-1,): R[j-1, j] for j = 1..T-1
    return float(self.sign * (above - self.b[1:]).mean())
