"""Anomaly scores for HTM on streams (Ahmad et al. 2017, the NAB detector).

- ``raw_anomaly(active_cols, predicted_cols)``: the share of this step's active columns
  that the previous step did not predict, ``1 - |A & P| / |A|``: 0 for a fully predicted
  input, 1 for a novel one.
- ``tail_probability(x, mean, std)``: the Gaussian tail ``Q(|x - mean| / std)``, NAB's
  ``tailProbability`` (a value below the mean is reflected above it).
- ``anomaly_likelihood(history, averaging_window)`` (a module function): the likelihood of
  the newest raw score against the rolling window ``history``: take the moving averages of
  ``averaging_window`` raw scores over the window, fit a Gaussian to them (mean floored
  at ``MIN_MEAN``, std at ``MIN_STD``, as NAB) and return ``1 - tail_probability(newest
  average)``. A stream whose predictions are always a bit wrong (noise) has a wide, high
  distribution, so a bad step is not unlikely; a stream that is usually predicted well
  makes the same step very unlikely.
- ``AnomalyLikelihood``: the streaming wrapper: keeps ``historic_window`` raw scores and
  answers 0.5 for the first ``learning_period + estimation_samples`` steps (NAB's probation).
- ``log_likelihood(L)``: NAB's log scale, ``log(1.0000000001 - L) / log(1e-10)``, to
  threshold at e.g. 0.5 (a likelihood of 0.99999).

Left out: NAB's re-estimation every ``reestimationPeriod`` steps (we re-fit every step,
vectorised) and its scoring of a detector (see ``streams.window_scores``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from track_htm import anomaly as _self

__all__ = ["raw_anomaly", "tail_probability", "anomaly_likelihood", "AnomalyLikelihood",
           "log_likelihood", "MIN_STD", "MIN_MEAN"]

MIN_STD = 0.0003 ** 0.5   # floor of the fitted std (NAB floors the variance at 0.0003)
MIN_MEAN = 0.03           # and the mean at 0.03


# --------------------------------------------------------------------------- scores


def raw_anomaly(active_cols: np.ndarray, predicted_cols: np.ndarray) -> float:
    """1 - |A & P| / |A| for boolean column SDRs; 0.0 when nothing is active."""
    a = np.asarray(active_cols, dtype=bool)
    n = np.count_nonzero(a)
    if n == 0:
        return 0.0
    return 1.0 - np.count_nonzero(a & np.asarray(predicted_cols, dtype=bool)) / n


def tail_probability(x, mean: float, std: float):
    """P(Z > |x - mean| / std) for a standard normal Z (scalar or array)."""
    z = np.abs(np.asarray(x, dtype=np.float64) - mean) / std
    out = 0.5 * np.vectorize(math.erfc)(z / math.sqrt(2.0))
    return float(out) if np.ndim(out) == 0 else out


def anomaly_likelihood(history: np.ndarray, averaging_window: int = 10) -> float:
    """Likelihood that the newest raw score (``history[-1]``) is anomalous, in [0, 1].

    history (T,): raw scores, oldest first, the newest last; T >= averaging_window.
    """
    h = np.asarray(history, dtype=np.float64)
    k = averaging_window
    csum = np.concatenate([[0.0], np.cumsum(h)])
    avgs = (csum[k:] - csum[:-k]) / k                          # (T - k + 1,) moving averages
    mean, std = max(avgs.mean(), MIN_MEAN), max(avgs.std(), MIN_STD)
    return 1.0 - _self.tail_probability(avgs[-1], mean, std)


def log_likelihood(likelihood):
    """NAB's log scale of a likelihood: 0.5 at 0.99999, 1.0 at 1 - 1e-10."""
    return np.log(1.0000000001 - np.asarray(likelihood)) / math.log(1.0 - 0.9999999999)


# --------------------------------------------------------------------------- streaming


@dataclass
class AnomalyLikelihood:
    learning_period: int = 288
    estimation_samples: int = 100
    historic_window: int = 8640
    averaging_window: int = 10

    def __post_init__(self):
        self.history: deque = deque(maxlen=self.historic_window)
        self.t = 0

    def update(self, raw: float) -> float:
        """Feed one raw score, get its likelihood (0.5 during the probation)."""
        self.history.append(float(raw))
        self.t += 1
        if self.t <= self.learning_period + self.estimation_samples or len(self.history) < self.averaging_window:
            return 0.5
        return _self.anomaly_likelihood(np.fromiter(self.history, dtype=np.float64), self.averaging_window)
