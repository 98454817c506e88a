"""LR schedules: exact values at the landmarks, derived in each docstring."""

import math

import pytest
import torch

from week03_training import LRScheduler, ScheduleConfig, lr_multiplier, warmup_cosine, wsd

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_warmup_cosine_landmarks():
    """warmup 10, total 110, min 0.1.

    - step 0: 1/10 (warmup counts from the first step); step 9 (warmup end): 1.0
    - step 10: cosine starts at 1.0
    - step 60 (half of the 100 cosine steps): 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55
    - step 110 (end) and after: 0.1
    """
    f = lambda s: warmup_cosine(s, warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1, abs=1e-12)
    assert f(4) == pytest.approx(0.5, abs=1e-12)
    assert f(9) == 1.0 and f(10) == 1.0
    assert f(60) == pytest.approx(0.55, abs=1e-12)
    assert f(35) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)), abs=1e-12)
    assert f(110) == pytest.approx(0.1, abs=1e-12) and f(500) == 0.1
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))       # monotone after warmup


def test_wsd_landmarks():
    """warmup 5, total 100, decay_frac 0.2, min 0: flat 1.0 on steps 5..79, then linear.

    Decay starts at step 80 (100 - 20): 1.0 there, 0.5 at step 90, 0 at 100.
    """
    f = lambda s: wsd(s, warmup_steps=5, total_steps=100, decay_frac=0.2, min_ratio=0.0)
    assert f(4) == 1.0 and f(5) == 1.0 and f(79) == 1.0 and f(80) == 1.0
    assert f(90) == pytest.approx(0.5, abs=1e-12)
    assert f(95) == pytest.approx(0.25, abs=1e-12)
    assert f(100) == 0.0


def test_scheduler_sets_group_lrs_and_round_trips():
    """Two groups with different base lrs follow the same multiplier."""
    p = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    opt = torch.optim.SGD([{"params": [p[0]], "lr": 0.02}, {"params": [p[1]], "lr": 0.003}])
    cfg = ScheduleConfig("cosine", warmup_steps=2, total_steps=10, min_ratio=0.0)
    sched = LRScheduler(opt, cfg)
    for _ in range(6):
        sched.apply()
        sched.advance()
    m = sched.apply()
    assert m == lr_multiplier(6, cfg)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02 * m)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.003 * m)
    other = LRScheduler(opt, cfg)
    other.load_state_dict(sched.state_dict())
    assert other.apply() == m


@pytest.mark.parametrize("bad", [dict(kind="step"), dict(warmup_steps=-1), dict(min_ratio=2.0),
                                 dict(total_steps=0)])
def test_schedule_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        ScheduleConfig(**bad)
