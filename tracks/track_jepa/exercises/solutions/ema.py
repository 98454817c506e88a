"""Worked solution: the EMA target update."""

from __future__ import annotations

import torch
import torch.nn as nn


def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    with torch.no_grad():
        for t, o in zip(target.parameters(), online.parameters()):
            t.copy_(momentum * t + (1.0 - momentum) * o.detach())
