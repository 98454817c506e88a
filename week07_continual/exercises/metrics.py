"""Week 07 exercises, the accuracy matrix: backward transfer (core ``bwt``) and forward
transfer (core ``fwt``).

Fill in the two methods below, then run ``make week07-exercises``. They replace
``AccuracyMatrix.bwt`` and ``AccuracyMatrix.fwt`` while their tests run; the tests check
them on hand-built matrices whose values are derived by hand in the tests' docstrings.
One test reads both numbers (bits per byte, lower is better), so it passes once both
methods are written.

``self`` is an ``AccuracyMatrix`` with T tasks. What it holds:

- ``self.R``: (T, T) float array; ``R[i, j]`` is the score on task j's test set after
  training on tasks 0..i (row i is evaluated right after task i);
- ``self.b``: (T,) float array; ``b[j]`` is the score on task j before any training (the
  row "-1"); it may be all NaN when it was not measured;
- ``self.T`` (the number of tasks) and ``self.sign``: +1.0 for a score where higher is
  better (accuracy), -1.0 where lower is better (loss, bits per byte). Multiply a
  difference by it, so that "negative = worse" holds in either case;
- ``self._check_complete()``: raises ``ValueError`` when some ``R[i, j]`` is NaN.
"""

from __future__ import annotations


def bwt(self) -> float:
    """Backward transfer (GEM, Lopez-Paz & Ranzato 2017): ``BWT = 1/(T-1) * sum_{j<T-1} d_j``.

    ``d_j = sign * (R[T-1, j] - R[j, j])``: the final score on task j against its score right
    after it was trained (the diagonal). Negative means later tasks made earlier ones worse
    (forgetting); positive, that they helped. The last task has no later tasks, so it is
    left out of the mean.

    Call ``self._check_complete()`` first. With one task there is nothing to compare:
    return ``math.nan``. Return a Python ``float``.

    Example, higher is better: ``R = [[0.9, .], [0.5, .]]`` -> ``BWT = 0.5 - 0.9 = -0.4``.
    """
    raise NotImplementedError("not implemented yet: AccuracyMatrix.bwt (the mean over all "
                              "tasks but the last of final score minus diagonal, signed)")


def fwt(self) -> float:
    """Forward transfer (GEM): ``FWT = 1/(T-1) * sum_{j>=1} sign * (R[j-1, j] - b[j])``.

    ``R[j-1, j]`` is the score on task j just before it is trained (after tasks 0..j-1, the
    cell above the diagonal); ``b[j]`` the untrained model's score on it. Positive means the
    earlier tasks helped task j before it was seen. Task 0 has no earlier tasks: left out.

    Call ``self._check_complete()`` first. Return ``math.nan`` with one task, or when any
    ``b[j]`` for ``j >= 1`` is NaN (not measured). Return a Python ``float``.

    Example, lower is better (bits per byte): ``R[0, 1] = 2.0``, ``b[1] = 2.5`` ->
    ``FWT = -(2.0 - 2.5) = 0.5``: task 0 helped task 1.
    """
    raise NotImplementedError("not implemented yet: AccuracyMatrix.fwt (the mean over all "
                              "tasks but the first of the score just before training minus "
                              "the untrained score, signed)")
