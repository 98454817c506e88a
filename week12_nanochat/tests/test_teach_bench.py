"""``benchmarks/teach.py`` at ``--tiny`` size runs end to end, each session in a new process,
and writes its JSON and PNG with the three systems (the plumbing only: a random model recalls
nothing)."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.stretch


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "teach.py"
    spec = importlib.util.spec_from_file_location("week12_bench_teach", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_the_tiny_bench_writes_the_three_systems(tmp_path, capsys):
    bench = _bench()
    result = bench.main(["--tiny", "--no-progress"])
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "runs" / "bench" / "week12-teach.json").read_text())
    assert (tmp_path / "runs" / "bench" / "week12-teach.png").stat().st_size > 0
    assert set(saved["rows"]) == set(bench.SYSTEMS) == set(saved["checks"])
    for name, rows in saved["rows"].items():
        assert [r["session"] for r in rows] == [0, 1, 2], name
        for r in rows:
            assert 0.0 <= r["recall"] <= 1.0 and set(r["tools"]) == {"arithmetic", "string",
                                                                      "facts"}
            assert r["pydocs_bpb"] > 0
        assert f"| {name} | 2 |" in out
    # every session ran in a process of its own (a restart), none in this one
    pids = [r["pid"] for r in saved["rows"]["memory"]]
    assert len(set(pids)) == 3 and os.getpid() not in pids
    # the memory consolidated (its adapters exist), the others did not train a memory
    assert "memory" in saved["rows"]["memory"][-1]["adapters"]
    assert result["checks"] == saved["checks"]


def test_bad_sizes_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        _bench().main(["--facts", "2", "--sessions", "5"])
    assert e.value.code == 2 and "--facts" in capsys.readouterr().err
