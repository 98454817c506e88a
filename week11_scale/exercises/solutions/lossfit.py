"""Week 11 exercise, worked: ``fit_power_law`` (see ../lossfit.py for the task)."""

from __future__ import annotations

import math

import numpy as np

from week11_scale.lossfit import LossFit


def fit_power_law(n, loss, source: dict | None = None):
    """The least-squares fit of log L = log(E + A N^-alpha), started from a grid over E."""
    from scipy.optimize import curve_fit
    n, loss = np.asarray(n, dtype=float), np.asarray(loss, dtype=float)
    if n.size < 3 or np.any(n <= 0):
        raise ValueError(f"need at least 3 points with N > 0, got N = {n.tolist()}")
    x, y, floor = np.log(n), np.log(loss), float(loss.min())

    def log_law(x, E, a, alpha):
        return np.log(E + np.exp(a - alpha * x))

    starts = []
    for E in np.linspace(0.0, 0.999 * floor, 100):
        slope, a = np.polyfit(x, np.log(loss - E), 1)        # log(L - E) = a + slope log N
        if slope < 0:
            starts.append((float(np.sum((log_law(x, E, a, -slope) - y) ** 2)), E, a, -slope))
    if not starts:
        raise ValueError("the loss does not fall with N: no power law to fit")
    _, E0, a0, alpha0 = min(starts)
    (E, a, alpha), _ = curve_fit(log_law, x, y, p0=[E0, a0, alpha0], maxfev=20000,
                                 bounds=([0.0, -np.inf, 1e-6], [floor * (1 - 1e-9), np.inf, 10.0]))
    return LossFit(E=float(E), A=float(math.exp(a)), alpha=float(alpha), n_min=float(n.min()),
                   n_max=float(n.max()), n_points=int(n.size), source=dict(source or {}))
