"""track_htm exercises, the spatial pooler: inhibition (which columns win) and learning
(how the winners' permanences move).

The pooler (``tracks/track_htm/src/track_htm/spatial_pooler.py``, read its module
docstring) computes, for an input SDR ``x`` (bool (N,)), each column's overlap with it
(connected synapses onto active bits, times the column's boost), then calls ``inhibit``
to pick the active columns and ``learn`` to update the winners. Fill both in, then run
``python -m pytest -p shared.exercises --exercises tracks/track_htm tracks/track_htm/tests``
(``--exercise-impl solutions`` runs the worked ones).
"""

from __future__ import annotations

import numpy as np


def inhibit(overlaps: np.ndarray, k: int, radius: int | None = None,
            stimulus_threshold: float = 1.0) -> np.ndarray:
    """overlaps (C,) float -> winners bool (C,).

    1. Rank the columns, best first: higher overlap first, and between equal overlaps the
       lower index first (``np.lexsort((np.arange(C), -overlaps))`` gives that order).
    2. Global inhibition (``radius is None``): the first ``k`` columns of that order win.
    3. Local inhibition: column i's neighbours are the columns ``i - radius .. i + radius``
       (not i itself) on a ring (indices mod C). Count how many neighbours rank before i;
       i wins when that count is below ``k_local = max(1, round(k / C * (2 * radius + 1)))``
       (the same density as the global k, in a neighbourhood). Vectorise it: a (C, 2r)
       index array of neighbours, then one comparison of ranks.
    4. Either way, a column with ``overlaps < stimulus_threshold`` never wins.
    """
    raise NotImplementedError("not implemented yet: inhibit (rank the columns, top-k globally "
                              "or fewer than k_local better neighbours locally, stimulus threshold)")


def learn(perm: np.ndarray, potential: np.ndarray, x: np.ndarray, active: np.ndarray,
          perm_inc: float, perm_dec: float) -> None:
    """Update ``perm`` (C, N) float32 IN PLACE; returns None.

    For every winning column c (``active[c]``), and every input bit i in its potential pool
    (``potential[c, i]``): ``perm[c, i] += perm_inc`` when ``x[i]`` is on, ``-= perm_dec``
    when it is off; clip to [0, 1]. Losing columns and bits outside the pool do not move.
    One expression over the winners' rows, no loop over columns.
    """
    raise NotImplementedError("not implemented yet: learn (winners' potential synapses: "
                              "+perm_inc onto active bits, -perm_dec onto inactive, clip)")
