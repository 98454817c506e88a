"""The experiment script end to end at the tiny preset: the tables, JSON and plots land in
--out, every model is counted at the HTM's budget, and a user's own NAB folder is read."""

import json

import numpy as np
import pytest

from track_htm.experiments import ExpConfig, load_streams, main, make_sequences
from track_htm.streams import taxi_like_stream, write_nab

pytestmark = pytest.mark.stretch


def test_tiny_preset_end_to_end(tmp_path):
    res = main(["--preset", "tiny", "--out", str(tmp_path)])
    for name in ("results.md", "results.json", "streams.png", "forgetting.png"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "nab" / "labels" / "combined_windows.json").is_file()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["streams"]) == {"sine_drift", "sawtooth_drift", "taxi_like"}
    for rows in saved["streams"].values():
        budget = rows["HTM"]["params"]
        assert abs(rows["LSTM"]["params"] - budget) / budget < 0.02
        assert abs(rows["transformer"]["params"] - budget) / budget < 0.25
        for r in rows.values():
            assert 0 <= r["acc"] <= r["acc_pm1"] <= 1
    f = res["forgetting"]
    assert set(f) == {"HTM", "LSTM", "transformer"}
    assert f["HTM"]["A_after_A"] > 0.8                      # the memory learned set A
    for r in f.values():
        assert r["forgotten"] == pytest.approx(r["A_after_A"] - r["A_after_B"])
    assert "| HTM |" in (tmp_path / "results.md").read_text()


def test_sequences_share_middles():
    A, B = make_sequences(ExpConfig(n_seqs=5, seq_len=8))
    for a, b in zip(A, B):
        assert a[1:-2] == b[1:-2] and a[0] != b[0] and a[-2] != b[-2]


def test_reads_a_users_nab_folder(tmp_path):
    s = taxi_like_stream(400, seed=7)
    write_nab(tmp_path / "NAB", "realTraffic/speed.csv", s)
    streams = load_streams(ExpConfig(stream_len=300), tmp_path / "work", tmp_path / "NAB", "realTraffic/speed.csv")
    nab = streams[-1]
    assert nab.name == "speed" and len(nab) == 400 and nab.windows == s.windows
    assert np.allclose(nab.values, s.values, rtol=1e-5)
    assert not (tmp_path / "work").exists()                 # nothing of ours written
