"""The anomaly score and NAB's anomaly likelihood, against scipy.stats.norm and a direct
rolling-window computation; the likelihood's point: the same bad step is unlikely after a
well-predicted stream and ordinary after a noisy one."""

import numpy as np
import pytest
from scipy.stats import norm

from track_htm.anomaly import (
    MIN_MEAN,
    MIN_STD,
    AnomalyLikelihood,
    anomaly_likelihood,
    log_likelihood,
    raw_anomaly,
    tail_probability,
)

pytestmark = pytest.mark.core


def test_raw_anomaly():
    a = np.zeros(100, dtype=bool)
    a[:20] = True
    p = np.zeros(100, dtype=bool)
    p[:15] = True
    p[50:] = True                                       # extra predictions do not lower the score
    assert raw_anomaly(a, p) == pytest.approx(0.25)
    assert raw_anomaly(a, a) == 0.0 and raw_anomaly(a, ~a) == 1.0
    assert raw_anomaly(np.zeros(100, bool), p) == 0.0


def test_tail_probability_equals_scipy():
    x = np.linspace(-3, 5, 41)
    np.testing.assert_allclose(tail_probability(x, 1.0, 0.7), norm.sf(np.abs(x - 1.0) / 0.7), rtol=1e-12)


def test_anomaly_likelihood_equals_direct_computation():
    rng = np.random.default_rng(0)
    h = rng.random(300) ** 3
    k = 10
    avgs = np.array([h[i - k + 1:i + 1].mean() for i in range(k - 1, len(h))])
    mean, std = max(avgs.mean(), MIN_MEAN), max(avgs.std(), MIN_STD)
    want = 1 - norm.sf(abs(avgs[-1] - mean) / std)
    assert anomaly_likelihood(h, k) == pytest.approx(want, rel=1e-10)


def test_likelihood_sees_a_burst_after_calm_but_not_after_noise():
    rng = np.random.default_rng(1)
    # three fully unpredicted steps at the end of each stream
    calm = np.concatenate([np.abs(rng.normal(0, 0.02, 500)), np.full(3, 1.0)])
    noisy = np.concatenate([rng.random(500), np.full(3, 1.0)])
    out = {}
    for name, raw in (("calm", calm), ("noisy", noisy)):
        al = AnomalyLikelihood(learning_period=50, estimation_samples=50, historic_window=400)
        lik = [al.update(r) for r in raw]
        assert lik[:100] == [0.5] * 100                 # probation
        out[name] = lik[-1]
    assert out["calm"] > 0.9999 and out["noisy"] < 0.999
    assert log_likelihood(0.99999) == pytest.approx(0.5, abs=1e-4)
    assert log_likelihood(out["calm"]) > log_likelihood(out["noisy"])
