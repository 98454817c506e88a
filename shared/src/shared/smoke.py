"""Smoke mode: one switch that shrinks notebooks and demos to CI size.

``make test`` executes every notebook with ``NANOCHAT_SMOKE=1``; a notebook
writes ``steps = smoke(2000, 20)`` and gets the small number in CI, the full
one when a learner runs it (``make weekNN-notebook``).
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")


def is_smoke() -> bool:
    """True when ``NANOCHAT_SMOKE`` is set to 1/true/yes."""
    return os.environ.get("NANOCHAT_SMOKE", "").lower() in ("1", "true", "yes")


def smoke(full: T, small: T) -> T:
    """``small`` in smoke mode, ``full`` otherwise."""
    return small if is_smoke() else full
