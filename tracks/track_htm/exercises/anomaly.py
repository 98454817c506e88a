"""track_htm exercises, the anomaly likelihood (Ahmad et al. 2017, NAB's detector).

The raw anomaly score says how surprised temporal memory was at this step. The likelihood
asks whether this stretch of surprise is unusual *for this stream*: ``AnomalyLikelihood``
(``tracks/track_htm/src/track_htm/anomaly.py``) keeps a rolling window of raw scores and
calls ``anomaly_likelihood`` on it every step.
"""

from __future__ import annotations

import numpy as np


def anomaly_likelihood(history: np.ndarray, averaging_window: int = 10) -> float:
    """history (T,) raw scores, oldest first, newest last -> the likelihood, a float in [0, 1].

    1. The moving averages of ``averaging_window`` consecutive scores over the window:
       (T - k + 1,) values, the last one the average of the newest k.
    2. Fit a Gaussian to them: ``mean = max(avgs.mean(), MIN_MEAN)`` and
       ``std = max(avgs.std(), MIN_STD)`` (population std; ``from track_htm.anomaly
       import MIN_MEAN, MIN_STD``: NAB's floors).
    3. Return ``1 - tail_probability(avgs[-1], mean, std)``, where the tail probability is
       ``Q(|x - mean| / std)`` of a standard normal (``track_htm.anomaly.tail_probability``
       or ``0.5 * erfc(z / sqrt(2))``).
    """
    raise NotImplementedError("not implemented yet: anomaly_likelihood (moving averages, "
                              "Gaussian fit with floors, 1 - tail probability of the newest)")
