"""The ``make week09-bench`` script runs end to end: ``benchmarks/trl_step.py --smoke``.

It times our DPO and GRPO steps and TRL's DPOTrainer / GRPOTrainer steps on a tiny
model; the test checks the plumbing only (both methods in the table, every time finite
and positive, the ratio equal to TRL / ours) and nothing about which side is faster.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.stretch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "trl_step.py"


def _load():
    spec = importlib.util.spec_from_file_location("week09_trl_step", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_smoke_prints_both_methods_with_positive_times(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    bench = _load()
    assert bench.main(["--smoke", "--threads", "0"]) == 0  # 0: leave torch's threads
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines()
            if line.startswith("| tiny ")]
    by_method = {cells[2].strip(): [c.strip() for c in cells] for cells in rows}
    assert set(by_method) == {"DPO", "GRPO"}, out
    for method, cells in by_method.items():
        ours, trl, ratio = float(cells[3]), float(cells[4]), float(cells[5])
        for x in (ours, trl, ratio):
            assert math.isfinite(x) and x > 0, (method, cells)
        assert ratio == pytest.approx(trl / ours, rel=0.05, abs=0.01), (method, cells)
        assert float(cells[6]) > 0 and float(cells[7]) > 0  # tokens/s, both sides
    gen = [float(x) for x in by_method["GRPO"][8].split("/") + by_method["GRPO"][9].split("/")]
    assert all(math.isfinite(x) and x > 0 for x in gen)
    assert not (tmp_path / "runs" / "bench").exists()  # a smoke run saves no figures


def test_bad_arguments_are_refused(capsys):
    bench = _load()
    with pytest.raises(SystemExit):
        bench.main(["--steps", "0"])
    assert "steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown sizes"):
        bench.BenchConfig(sizes=("huge",))
