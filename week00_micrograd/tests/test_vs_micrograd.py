"""Our engine against the PyPI ``micrograd`` package: same weights, same loss curve.

This is the correctness half of benchmarks/engine_vs_micrograd.py, at test size.
micrograd is in this package's ``dev`` extra; the test is skipped without it.
"""

from __future__ import annotations

import random

import pytest

from week00_micrograd import MLP, SGD, make_moons, vsum

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")

mg_nn = pytest.importorskip("micrograd.nn")


def test_loss_curve_and_gradients_match_micrograd():
    ours = MLP(2, [6, 6, 1], rng=random.Random(0))
    theirs = mg_nn.MLP(2, [6, 6, 1])
    for p_theirs, p_ours in zip(theirs.parameters(), ours.parameters()):
        p_theirs.data = p_ours.data
    X, y = make_moons(16, noise=0.1, seed=0)
    opt = SGD(ours.parameters(), lr=0.5)
    for step in range(4):
        # micrograd's demo loss: mean hinge + 1e-4 * L2, written the same way on both
        t_scores = [theirs(x) for x in X]
        t_loss = sum((1 + -yi * s).relu() for yi, s in zip(y, t_scores)) * (1.0 / len(y))
        t_loss = t_loss + 1e-4 * sum(p * p for p in theirs.parameters())
        theirs.zero_grad()
        t_loss.backward()

        scores = [ours(x) for x in X]
        loss = vsum((1 + -yi * s).relu() for yi, s in zip(y, scores)) * (1.0 / len(y))
        loss = loss + 1e-4 * vsum(p * p for p in ours.parameters())
        opt.zero_grad()
        loss.backward()

        if step == 0:  # same weights, same float operations in the same order
            assert loss.data == t_loss.data  # -> bit-identical
        else:  # the updates used gradients summed in another order: ~1e-16 drift
            assert loss.data == pytest.approx(t_loss.data, rel=1e-12)
        # backward: gradients are summed in a different order -> rounding only
        assert [p.grad for p in ours.parameters()] == pytest.approx(
            [p.grad for p in theirs.parameters()], rel=1e-12, abs=1e-15)
        opt.step()
        for p in theirs.parameters():
            p.data -= 0.5 * p.grad
