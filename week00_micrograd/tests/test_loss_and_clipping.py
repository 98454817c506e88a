"""cross_entropy (one fused node) and clip_grad_norm, against PyTorch in float64."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

from week00_micrograd import Value, clip_grad_norm, cross_entropy

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

CASES = [([1.3, -0.7, 2.1], 0), ([0.2, 0.2, 0.2, 0.2], 3), ([1000.0, 0.0, -1000.0], 1),
         ([-3.0, 5.5], 1), ([7.0], 0)]


@pytest.mark.parametrize("zs,target", CASES, ids=lambda c: str(c)[:20])
def test_cross_entropy_matches_torch(zs, target):
    logits = [Value(z) for z in zs]
    loss = cross_entropy(logits, target)
    loss.backward()
    t = torch.tensor(zs, dtype=torch.float64, requires_grad=True)
    ref = F.cross_entropy(t[None], torch.tensor([target]))
    ref.backward()
    assert loss.data == pytest.approx(ref.item(), rel=1e-12, abs=1e-12)
    assert [z.grad for z in logits] == pytest.approx(t.grad.tolist(), rel=1e-12, abs=1e-12)
    assert len(loss._prev) == len(zs)  # one node, not a chain of exp/sum/log


def test_cross_entropy_equals_the_unfused_chain_inside_a_graph():
    rng = random.Random(0)
    for _ in range(20):
        xs = [Value(rng.uniform(-2, 2)) for _ in range(4)]
        fused = [x * 1.5 - 0.2 for x in xs]
        target = rng.randrange(4)
        loss = cross_entropy(fused, target) * 2.0
        loss.backward()
        got = [x.grad for x in xs]
        for x in xs:
            x.grad = 0.0
        chain = [x * 1.5 - 0.2 for x in xs]
        total = chain[0].exp() + chain[1].exp() + chain[2].exp() + chain[3].exp()
        (-(chain[target] - total.log()) * 2.0).backward()
        assert got == pytest.approx([x.grad for x in xs], rel=1e-10)


def test_cross_entropy_bad_input_says_what_is_valid():
    with pytest.raises(ValueError, match=r"class index in \[0, 2\)"):
        cross_entropy([Value(0.0), Value(1.0)], 2)
    with pytest.raises(ValueError, match="empty"):
        cross_entropy([], 0)
    with pytest.raises(TypeError, match="must be Values"):
        cross_entropy([Value(0.0), 1.0], 0)


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0, 0.0])
def test_clip_grad_norm_matches_torch(max_norm):
    rng = random.Random(1)
    grads = [rng.uniform(-2, 2) for _ in range(7)]
    params = [Value(0.0) for _ in grads]
    for p, g in zip(params, grads):
        p.grad = g
    tensors = [torch.zeros(1, dtype=torch.float64, requires_grad=True) for _ in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor([g], dtype=torch.float64)
    norm = clip_grad_norm(params, max_norm)
    ref = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert norm == pytest.approx(ref.item(), rel=1e-12)
    assert [p.grad for p in params] == pytest.approx([t.grad.item() for t in tensors], rel=1e-12)
    assert math.sqrt(sum(p.grad**2 for p in params)) <= max(max_norm, 1e-9) + 1e-9 or \
        max_norm >= norm


def test_clip_grad_norm_rejects_a_negative_threshold():
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([Value(1.0)], -1.0)
