"""Week 03 exercises, the learning-rate schedules: warmup + cosine, and warmup-stable-decay.

Fill in the two functions below, then run ``make week03-exercises``. They replace
``week03_training.warmup_cosine`` and ``week03_training.wsd`` (in ``week03_training.schedule``,
where ``lr_multiplier`` and the ``LRScheduler`` call them) while their tests run. The tests
check exact values at the landmarks that each test's docstring derives, monotone decay after
warmup, and the scheduler setting every group's lr from your multiplier.

Both return a multiplier on the base learning rate (a float in [0, 1]); ``step`` counts
optimizer steps from 0 and may run past ``total_steps``.
"""


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """Linear warmup, then half a cosine from 1 down to ``min_ratio`` at ``total_steps``.

    - ``step < warmup_steps``: ``(step + 1) / warmup_steps``, so step 0 already trains
      (at ``1 / warmup_steps``) and step ``warmup_steps - 1`` is at 1.0; no warmup when
      ``warmup_steps == 0``;
    - ``step >= total_steps``: ``min_ratio`` exactly;
    - otherwise, with ``progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)``
      (0 at the end of warmup, towards 1 at the end; the max guards warmup == total):
      ``min_ratio + (1 - min_ratio) * (1 + cos(pi * progress)) / 2``.

    Example: warmup 10, total 110, min 0.1 gives 0.1 at step 0, 1.0 at steps 9 and 10,
    0.55 at step 60 (half way down the cosine) and 0.1 from step 110 on.
    """
    raise NotImplementedError("not implemented yet: warmup_cosine (linear warmup, then half a "
                              "cosine from 1 to min_ratio)")


def wsd(step: int, warmup_steps: int, total_steps: int, decay_frac: float = 0.2,
        min_ratio: float = 0.0) -> float:
    """Warmup-stable-decay: warmup, a long flat stretch at 1, then a linear cool-down.

    - ``step < warmup_steps``: ``(step + 1) / warmup_steps``, as in ``warmup_cosine``;
    - ``step >= total_steps``: ``min_ratio`` exactly;
    - the cool-down lasts ``decay_steps = max(1, round(decay_frac * total_steps))`` steps and
      starts at ``decay_start = max(warmup_steps, total_steps - decay_steps)`` (never inside
      the warmup); before it the multiplier is 1.0;
    - from ``decay_start``: a straight line from 1.0 there to ``min_ratio`` at ``total_steps``,
      ``1 + (min_ratio - 1) * (step - decay_start) / max(1, total_steps - decay_start)``.

    Example: warmup 5, total 100, decay_frac 0.2, min 0: 1.0 on steps 4..80, 0.5 at step 90,
    0.25 at 95, 0.0 at 100. The flat stretch is why WSD suits runs of unknown length: any
    checkpoint on it can be cooled down later into a finished model.
    """
    raise NotImplementedError("not implemented yet: wsd (warmup, flat at 1, then a linear "
                              "cool-down to min_ratio over the last decay_frac of the run)")
