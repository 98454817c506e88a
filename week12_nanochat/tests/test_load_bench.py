"""The load benchmark at a tiny size: both servers answer every request with no error, the
figures add up (tokens/s is the streamed usage over the wall time) and the JSON lands
atomically in ``<runs>/bench/week12-load.json``."""

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.stretch

BENCH = Path(__file__).parents[1] / "benchmarks" / "load.py"


def _load():
    spec = importlib.util.spec_from_file_location("week12_load_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_load_benchmark_runs_small_and_writes_its_figures(tmp_path):
    bench = _load()
    result = bench.main(["--clients", "3", "--requests", "6", "--max-tokens", "8",
                         "--batch-size", "3", "--gather-ms", "20", "--preset", "test",
                         "--repeats", "1"])
    assert "random week04 'test' model" in result["model"]  # no speedrun under tmp runs
    batched, single = result["rows"]
    assert (batched["batch_size"], single["batch_size"]) == (3, 1)
    for row in (batched, single):
        assert row["requests"] == 6 and row["errors"] == 0
        assert 0 < row["completion_tokens"] <= 6 * 8
        assert row["tokens_per_s"] == pytest.approx(row["completion_tokens"] / row["wall_s"])
        assert row["ttft_ms_p50"] <= row["ttft_ms_p95"] <= row["ttft_ms_p99"]
    assert single["rows_per_batch"] == 1 and single["batches"] == 6
    # (how many requests shared a batch here depends on timing: test_batcher proves sharing)
    assert 1 <= batched["batches"] <= 6 and batched["rows_per_batch"] <= 3
    ratio = batched["tokens_per_s"] / single["tokens_per_s"]
    assert result["summary"]["throughput_ratio"] == pytest.approx(ratio)
    step = result["step"]  # the model's step alone: the most batching can gain here
    assert step["step_ms_1"] > 0 and step["step_ms_3"] > 0
    assert step["ceiling"] == pytest.approx(3 * step["step_ms_1"] / step["step_ms_3"])
    saved = json.loads((tmp_path / "runs" / "bench" / "week12-load.json").read_text())
    assert saved["rows"] == result["rows"] and saved["name"] == "week12-load"
    assert not list((tmp_path / "runs" / "bench").glob("*.tmp"))


def test_sampled_requests_each_with_its_own_seed_load_both_servers_cleanly(tmp_path):
    """``--temperature``: every request sampled with its own seed (the API takes it; the
    batcher lets different seeds share a batch, tests/test_batcher.py proves the replies)."""
    result = _load().main(["--clients", "3", "--requests", "6", "--max-tokens", "8",
                           "--batch-size", "3", "--gather-ms", "20", "--preset", "test",
                           "--repeats", "1", "--temperature", "1.0"])
    assert result["config"]["temperature"] == 1.0
    for row in result["rows"]:
        assert row["requests"] == 6 and row["errors"] == 0, row["error_samples"]
        assert 0 < row["completion_tokens"] <= 6 * 8
