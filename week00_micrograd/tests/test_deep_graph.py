"""Deep graphs: backward must be iterative (no recursion limit) and still exact."""

from __future__ import annotations

import sys

import pytest
import torch

from week00_micrograd import Value

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_100k_node_chain_backward_without_recursion():
    """y = (...((x * 0.9999) + 1e-4) * 0.9999 + 1e-4 ...): 100,000 op nodes.

    dy/dx = 0.9999 ** 50_000: each of the 50,000 multiplications contributes
    a factor 0.9999, the additions contribute 1. The product of 50,000 equal
    float64 factors carries at most ~5e4 roundings of 1.1e-16 each, so 1e-10
    relative is a safe bound.
    """
    assert sys.getrecursionlimit() < 100_000  # a recursive topo sort would overflow
    x = Value(0.5)
    y = x
    for _ in range(50_000):
        y = y * 0.9999 + 1e-4
    order = y.topo()
    assert len(order) == 100_001  # x and 100,000 operation nodes
    y.backward()
    assert x.grad == pytest.approx(0.9999**50_000, rel=1e-10)
    del order, y  # freeing a 100k-deep chain must not crash either


def test_100k_node_chain_of_binary_nodes_matches_torch():
    """A chain where every node has two Value inputs, against torch (float64).

    Both sides evaluate the same additions and multiplications in the same order,
    so values agree to rounding; we allow 1e-9 relative.
    """
    n = 25_000  # 4 nodes per round -> 100,000 nodes
    a, b = Value(0.3), Value(0.2)
    ta = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    y, ty = a, ta
    for _ in range(n // 10):  # torch is slow per op; compare a 10,000-node prefix
        y = (y * 0.999 + b * 1e-3).tanh()
        ty = (ty * 0.999 + tb * 1e-3).tanh()
    y.backward()
    ty.backward()
    assert y.data == pytest.approx(ty.item(), rel=1e-9)
    assert a.grad == pytest.approx(ta.grad.item(), rel=1e-9)
    assert b.grad == pytest.approx(tb.grad.item(), rel=1e-9)
    # and the full-length chain runs
    y = a
    for _ in range(n):
        y = (y * 0.999 + b * 1e-3).tanh()
    assert len(y.topo()) == 4 * n + 2
    y.backward()
    assert a.grad != 0.0


def test_deep_ladder_of_diamonds_matches_torch():
    """y_{k+1} = tanh(y_k) / 2 + y_k / 2: every level uses the previous node twice."""
    x = Value(0.8)
    tx = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    y, ty = x, tx
    for _ in range(2_000):
        y = y.tanh() * 0.5 + y * 0.5
        ty = ty.tanh() * 0.5 + ty * 0.5
    y.backward()
    ty.backward()
    assert y.data == pytest.approx(ty.item(), rel=1e-9)
    assert x.grad == pytest.approx(tx.grad.item(), rel=1e-9)
