"""NAB-format files (written here, read back by the strict readers, with clear errors for
bad files), the synthetic streams with drift and injected anomalies, and window scoring."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from track_htm.streams import (
    Stream,
    StreamError,
    read_nab_csv,
    read_nab_windows,
    roc_auc,
    synthetic_stream,
    taxi_like_stream,
    window_mask,
    window_scores,
    write_nab,
)

pytestmark = pytest.mark.stretch


def test_nab_round_trip(tmp_path):
    s = taxi_like_stream(600, seed=3)
    data, labels = write_nab(tmp_path, "realKnownCause/taxi.csv", s)
    assert data.read_text().splitlines()[0] == "timestamp,value"
    assert data.read_text().splitlines()[1].startswith("2014-07-07 00:00:00,")
    back = read_nab_csv(data)
    wins = read_nab_windows(labels, "realKnownCause/taxi.csv")
    assert np.array_equal(back.timestamps, s.timestamps)
    np.testing.assert_allclose(back.values, s.values, rtol=1e-5)
    assert wins == s.windows and len(wins) == 3
    table = json.loads(labels.read_text())
    assert table["realKnownCause/taxi.csv"][0][0].endswith(".000000")     # NAB's own format


@pytest.mark.parametrize("body, match", [
    ("time,value\n2014-07-01 00:00:00,1\n", "header must be 'timestamp,value'"),
    ("timestamp,value\n2014-07-01 00:00:00,abc\n", r":2: the value 'abc' is not a number"),
    ("timestamp,value\n2014-07-01 00:00:00,1\nyesterday,2\n", r":3: cannot read the timestamp"),
    ("timestamp,value\n2014-07-01 01:00:00,1\n2014-07-01 00:00:00,2\n", r":3: .* before the previous"),
    ("timestamp,value\n2014-07-01 00:00:00,1,2\n", "expected 2 fields"),
    ("timestamp,value\n", "no rows"),
])
def test_bad_csv_says_what_and_where(tmp_path, body, match):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(StreamError, match=match):
        read_nab_csv(p)


def test_bad_windows_file(tmp_path):
    with pytest.raises(StreamError, match="no such file"):
        read_nab_csv(tmp_path / "missing.csv")
    p = tmp_path / "w.json"
    p.write_text("{not json")
    with pytest.raises(StreamError, match="not valid JSON"):
        read_nab_windows(p, "a.csv")
    p.write_text(json.dumps({"a.csv": [["2014-01-02 00:00:00.000000", "2014-01-01 00:00:00.000000"]]}))
    with pytest.raises(StreamError, match="ends before it starts"):
        read_nab_windows(p, "a.csv")
    with pytest.raises(StreamError, match="no windows for 'b.csv'"):
        read_nab_windows(p, "b.csv")


@pytest.mark.parametrize("kind", ["sine", "sawtooth"])
def test_synthetic_stream_drifts_and_labels_its_anomalies(kind):
    s = synthetic_stream(kind, 2000, period=40, drift=0.5, noise=0.0, n_anomalies=4, seed=1)
    assert len(s) == 2000 and len(s.windows) == 4 and s.values.min() >= 0 and s.values.max() <= 1
    lab = s.labels
    assert not lab[:1000].any() and 0 < lab.mean() < 0.2        # anomalies only in the second half
    clean = synthetic_stream(kind, 2000, period=40, drift=0.5, noise=0.0, n_anomalies=0, seed=1)
    diff = np.abs(s.values - clean.values) > 1e-9
    assert diff.any() and not (diff & ~lab).any()               # every injected change is inside a window
    # drift: the period grows, so the first half has more upward zero crossings than the second
    x = clean.values - 0.5
    ups = np.flatnonzero((x[:-1] < 0) & (x[1:] >= 0))
    assert (ups < 1000).sum() > (ups >= 1000).sum()


def test_window_scores():
    ts = np.datetime64("2026-01-01T00:00:00") + np.arange(100).astype("timedelta64[m]")
    s = Stream(ts, np.zeros(100), [(ts[10], ts[20]), (ts[50], ts[60])])
    assert window_mask(ts, s.windows).sum() == 22
    scores = np.zeros(100)
    scores[[15, 30, 31]] = 1.0
    w = window_scores(scores, s, 0.5)
    assert w == {"caught": 1, "windows": 2, "false_pos": 2, "recall": 0.5}


def test_roc_auc_equals_sklearn():
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.1
    for scores in (rng.random(500), np.round(rng.random(500), 1), y + rng.random(500)):  # ties, separable
        assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert np.isnan(roc_auc(np.zeros(5, bool), np.arange(5.0)))
