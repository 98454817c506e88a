"""Track JEPA exercise: the exponential-moving-average target encoder.

I-JEPA's target encoder gets no gradient. After every optimizer step it moves a little
towards the context encoder: ``t <- m * t + (1 - m) * c`` for every parameter, with the
momentum ``m`` rising from 0.996 to 1.0 during training (``ijepa.ema_momentum``). The
package calls ``ema_update`` from week03 Trainer's hook ``EMAHook`` after each step.
Fill it in, then run ``make trackjepa-exercises``.
"""

from __future__ import annotations

import torch.nn as nn


def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place, for each pair of parameters (``zip(target.parameters(), online.parameters())``):
    ``t = momentum * t + (1 - momentum) * o``.

    - run it under ``torch.no_grad()`` (this is not part of any graph) and update the
      target's tensors in place (``mul_``, ``add_(..., alpha=...)``), so the optimizer and
      any hook holding them sees the new values;
    - read ``o`` detached; never touch ``online``.
    """
    raise NotImplementedError("not implemented yet: ema_update (t <- m t + (1 - m) o, in place, "
                              "no grad)")
