"""Metrics logger, benchmark files and the dashboard."""

import json

import pytest
import torch

from shared import MetricsLogger, new_run_dir, read_metrics, save_benchmark
from shared.dashboard import build
from shared.metrics import list_runs, load_benchmarks

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_logger_writes_jsonl_and_meta(tmp_path):
    run = new_run_dir("week00-demo", root=tmp_path)
    with MetricsLogger(run, config={"lr": 0.1}, tensorboard=False) as log:
        log.log(step=0, loss=torch.tensor(2.0), acc=0.5)
        log.log(step=1, loss=1.5)
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [0, 1]
    assert rows[0]["loss"] == 2.0 and rows[0]["acc"] == 0.5 and rows[1]["loss"] == 1.5
    assert all(r["time"] >= 0 for r in rows)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["config"] == {"lr": 0.1} and meta["name"] == run.name
    assert list_runs(tmp_path) == [run]


def test_logger_rejects_bad_values(tmp_path):
    with MetricsLogger(tmp_path / "r", tensorboard=False) as log:
        with pytest.raises(TypeError, match="'loss' must be a real number.*str"):
            log.log(step=0, loss="high")
        with pytest.raises(ValueError, match="reserved"):
            log.log(step=0, time=3.0)
    with pytest.raises(RuntimeError, match="closed"):
        log.log(step=1, loss=1.0)


def test_torn_last_line_is_skipped(tmp_path):
    with MetricsLogger(tmp_path / "r", tensorboard=False) as log:
        log.log(step=0, loss=1.0)
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write('{"step": 1, "lo')  # a run killed mid-write
    assert len(read_metrics(tmp_path / "r")) == 1


def test_tensorboard_events_written_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    with MetricsLogger(tmp_path / "r", tensorboard=True) as log:
        log.log(step=0, loss=1.0)
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "r" / "tb").iterdir())


def test_dashboard_renders_runs_and_benchmarks(tmp_path):
    for name in ("week00-a", "week00-b"):
        with MetricsLogger(tmp_path / name, tensorboard=False) as log:
            for s in range(5):
                log.log(step=s, loss=1.0 / (s + 1), lr=0.1)
    save_benchmark("week00_engine", {"rows": [{"impl": "ours", "s": 1.0}],
                                     "summary": {"speedup": 4.2}, "target_met": True}, root=tmp_path)
    assert load_benchmarks(tmp_path, prefix="week00")[0]["summary"]["speedup"] == 4.2
    index = build(tmp_path)
    page = index.read_text()
    assert "week00-a" in page and "week00_engine" in page and "target met" in page
    for png in (tmp_path / "week00-a" / "metrics.png", tmp_path / "compare_loss.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_truncate_metrics_for_a_resumed_run(tmp_path):
    from shared import truncate_metrics

    with MetricsLogger(tmp_path / "r", tensorboard=False) as log:
        for s in range(6):
            log.log(step=s, loss=float(s))
        log.log(loss=9.0)  # a row without a step
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # torn by a kill
    assert truncate_metrics(tmp_path / "r", 3) == 4
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [0, 1, 2, 3]
    assert truncate_metrics(tmp_path / "missing", 3) == 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["meta.json", "metrics.jsonl"]


def test_best_time_returns_the_fastest_call_and_the_last_result(monkeypatch):
    """A fake clock (no wall-clock in tests): the three calls take 3, 1 and 2 ticks."""
    from types import SimpleNamespace

    import shared.metrics
    from shared import best_time

    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])  # (start, end) of each call
    # the module's own `time`, not the global one that pytest and others also read
    monkeypatch.setattr(shared.metrics, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    calls = []

    def fn():
        calls.append(1)
        return len(calls)

    seconds, out = best_time(fn, 3)
    assert seconds == 1.0 and out == 3 and len(calls) == 3
    with pytest.raises(ValueError, match="repeats"):
        best_time(fn, 0)
