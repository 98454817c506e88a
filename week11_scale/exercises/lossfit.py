"""Week 11 exercise, scaling laws: fit L(N) = E + A * N^-alpha to a sweep's points.

Kaplan et al. (2020) and Chinchilla (Hoffmann et al. 2022) found that the loss of a
compute-optimally trained language model falls as a power of its size towards a floor E
(the entropy of the text that no model removes). Three parameters, so at least three sizes:

- fit in log L (relative errors: a 1% miss at loss 6 counts as much as at loss 2), with
  A = exp(a) so A stays positive;
- the fit is not convex in (E, a, alpha); start it well: for a fixed E, log(L - E) is a
  straight line in log N (slope -alpha, intercept a), so a grid over E in [0, min L) with a
  ``numpy.polyfit`` per E gives the best start; then refine all three with
  ``scipy.optimize.curve_fit`` inside bounds (0 <= E < min L, alpha > 0).

Fill in ``fit_power_law``, then run ``make week11-exercises``. It replaces
``week11_scale.lossfit.fit_power_law`` (and the sweep's name for it) while the fitter's
tests run: four exact laws recovered (E to 1e-4, alpha to 1e-4 relative) and one through
0.2% noise.
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (yours to use)

from week11_scale.lossfit import LossFit  # noqa: F401  (what you return)


def fit_power_law(n, loss, source: dict | None = None):
    """``LossFit(E=, A=, alpha=, n_min=min(n), n_max=max(n), n_points=len(n),
    source=dict(source or {}))`` for the least-squares fit of log L = log(E + A N^-alpha).
    Raise ValueError for fewer than 3 points or any N <= 0."""
    raise NotImplementedError("not implemented yet: fit_power_law (a grid over E for the "
                              "start, then scipy.optimize.curve_fit in log L)")
