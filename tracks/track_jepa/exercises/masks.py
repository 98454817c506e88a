"""Track JEPA exercise: I-JEPA's multi-block mask for one image.

I-JEPA hides several rectangular *target* blocks of an image's patch grid and asks a
predictor to produce their representations from one large *context* block. The context
must not contain any target patch (otherwise the predictor just copies). Read
``tracks/track_jepa/src/track_jepa/masks.py``'s module docstring: the batch collator
draws one target shape and one context shape per batch (``block_shape``) and calls
``multiblock_mask`` once per image. Fill it in, then run ``make trackjepa-exercises``.
"""

from __future__ import annotations

import random


def multiblock_mask(grid: int, target_hw: tuple[int, int], context_hw: tuple[int, int],
                    cfg, rng: random.Random) -> tuple[list[int], list[list[int]]]:
    """-> (context indices, [target indices] * cfg.num_targets), every list sorted.

    Patches are numbered row-major: patch (row, col) is ``row * grid + col``.
    ``cfg`` is a ``MaskConfig`` (``num_targets``, ``min_keep``, ``max_tries``).

    Repeat up to ``cfg.max_tries`` times:

    1. for each of the ``num_targets`` targets: ``top = rng.randint(0, grid - h)``, then
       ``left = rng.randint(0, grid - w)`` (in that order; (h, w) = ``target_hw``); the
       target is the set of the h x w patches there (targets may overlap each other);
    2. the context: ``top``, ``left`` drawn the same way for ``context_hw``; its patches
       minus the union of all targets;
    3. if the context keeps at least ``cfg.min_keep`` patches, return it and the targets
       as sorted lists.

    After ``max_tries`` failures raise ``ValueError("no context ...")``.
    """
    raise NotImplementedError("not implemented yet: multiblock_mask (place the target blocks, "
                              "cut them out of the context block, check min_keep)")
