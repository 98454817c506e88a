"""SGD and AdamW against torch.optim, step for step, in float64."""

from __future__ import annotations

import math
import random

import pytest
import torch

from week00_micrograd import MLP, SGD, AdamW, Value, cosine_lr, make_moons, vsum

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# Same formulas, same float64 arithmetic: parameters drift apart only through
# rounding of the gradients (summation order), ~1e-16 per step. 1e-9 after
# 30 steps leaves a wide margin yet fails on any formula mistake (bias
# correction, decay order, eps placement), which shows up at >= 1e-4.
STEP_TOL = 1e-9


def _rosenbrock_ours(p):
    x, y = p
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def _rosenbrock_torch(t):
    return (1.0 - t[0]) ** 2 + 100.0 * (t[1] - t[0] ** 2) ** 2


@pytest.mark.parametrize("kwargs", [
    {"lr": 1e-2},
    {"lr": 3e-2, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1},
    {"lr": 1e-2, "betas": (0.3, 0.9), "weight_decay": 0.0},  # beta1 < 0.5: lerp's other branch
])
def test_adamw_matches_torch_on_rosenbrock(kwargs):
    params = [Value(-1.2), Value(1.0)]
    opt = AdamW(params, **kwargs)
    t = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    t_opt = torch.optim.AdamW([t], **kwargs)
    for step in range(50):
        opt.zero_grad()
        _rosenbrock_ours(params).backward()
        opt.step()
        t_opt.zero_grad()
        _rosenbrock_torch(t).backward()
        t_opt.step()
        assert [p.data for p in params] == pytest.approx(t.tolist(), rel=STEP_TOL, abs=STEP_TOL), step


def _hinge(scores, y):
    return vsum((1.0 - yi * s).relu() for yi, s in zip(y, scores)) * (1.0 / len(y))


@pytest.mark.parametrize("opt_name", ["adamw", "sgd"])
def test_optimizer_matches_torch_training_an_mlp(opt_name, torch_twin):
    """The same MLP, data, loss and LR schedule; compare every parameter after every step."""
    model = MLP(2, [8, 8, 1], rng=random.Random(0))
    X, y = make_moons(24, noise=0.1, seed=1)
    forward, tensors, mapping = torch_twin(model)
    tX, ty = torch.tensor(X, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    if opt_name == "adamw":
        opt = AdamW(model.parameters(), lr=0.05, weight_decay=0.05)
        t_opt = torch.optim.AdamW(tensors, lr=0.05, weight_decay=0.05)
    else:
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        t_opt = torch.optim.SGD(tensors, lr=0.1, momentum=0.9, weight_decay=1e-3)
    steps = 30
    for step in range(steps):
        lr = cosine_lr(step, 0.05 if opt_name == "adamw" else 0.1, steps, warmup_steps=3)
        opt.lr = lr
        for group in t_opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        loss = _hinge([model(x) for x in X], y)
        loss.backward()
        opt.step()
        t_opt.zero_grad()
        t_loss = (1.0 - ty * forward(tX)).relu().mean()
        t_loss.backward()
        t_opt.step()
        assert loss.data == pytest.approx(t_loss.item(), rel=STEP_TOL, abs=STEP_TOL)
        ours = [p.data for p in model.parameters()]
        theirs = [t[idx].item() for t, idx in mapping]
        assert ours == pytest.approx(theirs, rel=STEP_TOL, abs=STEP_TOL), step
    assert loss.data < 0.5  # and it actually trained


def test_sgd_plain_step_is_gradient_descent():
    p = Value(3.0)
    opt = SGD([p], lr=0.25)
    (p * p).backward()  # grad 6
    opt.step()
    assert p.data == 3.0 - 0.25 * 6.0


def test_cosine_lr_matches_torch_schedulers():
    """Warmup = torch LinearLR(1/W -> 1 over W-1 steps); decay = CosineAnnealingLR(T - W)."""
    lr, total, warmup = 0.1, 40, 5
    t = torch.zeros(1, requires_grad=True)
    t_opt = torch.optim.SGD([t], lr=lr)
    sched = torch.optim.lr_scheduler.SequentialLR(t_opt, [
        torch.optim.lr_scheduler.LinearLR(t_opt, 1.0 / warmup, 1.0, total_iters=warmup - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, T_max=total - warmup, eta_min=1e-3),
    ], milestones=[warmup])
    ours, theirs = [], []
    for step in range(total):
        ours.append(cosine_lr(step, lr, total, warmup, min_lr=1e-3))
        theirs.append(t_opt.param_groups[0]["lr"])
        t_opt.step()
        sched.step()
    # torch updates the cosine recursively, we use the closed form: rounding only
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    assert cosine_lr(total, lr, total, warmup, min_lr=1e-3) == 1e-3
    assert cosine_lr(0, lr, total) == lr
    assert cosine_lr(total // 2, lr, total) == pytest.approx(lr / 2)
    assert math.isclose(cosine_lr(warmup - 1, lr, total, warmup), lr)
