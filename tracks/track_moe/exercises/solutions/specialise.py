"""Worked solution: the routing entropy (see ../specialise.py for the task)."""

from __future__ import annotations

import math

import torch


def routing_entropy(load: torch.Tensor) -> float:
    total = float(load.double().sum())
    h = 0.0
    for c in load.double().tolist():
        if c > 0:
            p = c / total
            h -= p * math.log2(p)
    return h
