"""The learning-forgetting frontier on the tiny model: one curve per method, and reading a
curve at a given gain."""

import math

import pytest

from track_continual import FrontierConfig, forgetting_at_gain, plot_frontier, run_frontier

pytestmark = pytest.mark.stretch


def test_forgetting_at_gain_interpolates_linearly():
    """Between (gain 0.2, forgetting 0.1) and (0.6, 0.3), gain 0.5 lies 3/4 of the way: 0.25."""
    curve = [(0, 0.0, 0.0), (10, 0.2, 0.1), (20, 0.6, 0.3)]
    assert forgetting_at_gain(curve, 0.5) == pytest.approx(0.25)
    assert forgetting_at_gain(curve, 0.2) == pytest.approx(0.1)
    assert math.isnan(forgetting_at_gain(curve, 0.7))


def test_frontier_runs_every_method(pretrained, pretraining_task, stream, tmp_path):
    cfg = FrontierConfig(ranks=(2, 4), steps=6, eval_every=3, batch_size=8, lora_lr=2e-2,
                         full_lr=1e-2)
    curves = run_frontier(pretrained, stream.tasks[1], pretraining_task, cfg, progress=False)
    assert list(curves) == ["lora r=2", "lora r=4", "full"]
    for c in curves.values():
        assert [p[0] for p in c] == [0, 3, 6] and c[0] == (0, 0.0, 0.0)
    # full fine-tuning at this lr learns task B; the source's accuracy can only drop
    assert curves["full"][-1][1] > 0
    assert all(0 <= f <= 1 for c in curves.values() for _, _, f in c)
    plot_frontier(curves, tmp_path / "f.png", units="exact match")
    assert (tmp_path / "f.png").stat().st_size > 0
