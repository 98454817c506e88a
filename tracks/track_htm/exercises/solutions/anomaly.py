"""Worked solution: the anomaly likelihood (see ../anomaly.py)."""

from __future__ import annotations

import math

import numpy as np

from track_htm.anomaly import MIN_MEAN, MIN_STD


def anomaly_likelihood(history, averaging_window=10):
    k = averaging_window
    avgs = np.convolve(np.asarray(history, dtype=np.float64), np.ones(k) / k, mode="valid")
    mean = max(float(avgs.mean()), MIN_MEAN)
    std = max(float(avgs.std()), MIN_STD)
    z = abs(avgs[-1] - mean) / std
    return 1.0 - 0.5 * math.erfc(z / math.sqrt(2.0))
