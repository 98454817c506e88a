"""``make week10-bench``'s other scripts run end to end at smoke size: the fact world, routing
and stacking. The tests check the plumbing only (every row present, figures in range, no
figures saved by a smoke run), nothing about the measured values."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.stretch


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_factworld_smoke_prints_the_five_conditions(runs, capsys, load_bench):
    from week10_hydra.factworld import CONDITIONS

    result = load_bench("factworld").main(["--smoke", "--threads", "0", "--train-eval", "2",
                                      "--no-progress"])
    out = capsys.readouterr().out
    assert set(result["rows"]) == set(CONDITIONS)
    for name in CONDITIONS:
        assert f"| {name} |" in out, out
        assert 0.0 <= result["rows"][name]["em"] <= 1.0
    assert not (runs / "bench").exists()  # a smoke run saves no figures


def test_routing_smoke_prints_every_stream(runs, capsys, load_bench):
    bench = load_bench("routing")
    rows = bench.main(["--smoke", "--threads", "0", "--no-progress"])
    out = capsys.readouterr().out
    assert [r["stream"] for r in rows] == list(bench.STREAMS)
    for r in rows:
        assert 0.0 <= r["proto_acc"] <= 1.0 and r["held_out"] > 0, r
        assert f"| {r['stream']} |" in out
    assert not (runs / "bench").exists()


def test_stacking_smoke_prints_every_stack(runs, capsys, load_bench):
    rows = load_bench("stacking").main(["--smoke", "--threads", "0", "--no-progress"])
    out = capsys.readouterr().out
    labels = [r["adapters"] for r in rows]
    assert labels[:5] == ["base", "A alone (knowledge)", "B alone (format)",
                          "uniform (0.5, 0.5)", "A+B task arithmetic (1, 1)"]
    assert sum(label.startswith("LoraHub") for label in labels) == 2
    for r in rows:
        assert all(0.0 <= r[k] <= 1.0 for k in ("em_knowledge", "em_format", "em_two_skill"))
        assert math.isfinite(r["loss_two_skill"]) and f"| {r['adapters']} |" in out
    assert not (runs / "bench").exists()
