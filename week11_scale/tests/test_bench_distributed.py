"""The distributed benchmark runs end to end: ``benchmarks/distributed.py --smoke``.

Four real torchrun launches (1 process, then 2 for ddp, fsdp, zero1) of a tiny Llama on the
conftest's pydocs shards. Checked: a table row per strategy, the per-rank bytes counted from
the local tensors against the unsharded run (fsdp's ranks hold halves of ddp's parameters,
gradients and AdamW state that add up to it; zero1's ranks split ddp's optimizer state and
keep every parameter), the planner's parameter bytes equal to the counted ones, every
throughput positive and every 2-process run spending time in collectives. Nothing about
which strategy is faster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "distributed.py"


def _run(args, tmp_path, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NANOCHAT_RUNS": str(tmp_path / "runs")}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=tmp_path)


@pytest.mark.stretch
def test_smoke_measures_every_strategy_with_real_sharding(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    p = _run(["--smoke", "--data", data_dir, "--json", out, "--no-progress"], tmp_path)
    assert p.returncode == 0, p.stderr[-4000:]
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
             for line in p.stdout.splitlines() if line.startswith("| ") and "---" not in line}
    assert {"none (1 process)", "ddp", "fsdp", "zero1"} <= cells.keys(), p.stdout
    for s in ("ddp", "fsdp", "zero1"):
        tok1, tok2, eff, comm = map(float, cells[s][:4])
        assert tok1 > 0 and tok2 > 0 and eff > 0 and comm > 0, (s, cells[s])

    res = json.loads(out.read_text())
    rows = {r["strategy"]: r for r in res["rows"]}
    one, ddp, fsdp, zero1 = rows["none"], rows["ddp"], rows["fsdp"], rows["zero1"]
    assert all(r["tok_s"] > 0 for r in rows.values())
    n_bytes = 4 * one["n_params"]                       # fp32 parameters of the whole model
    assert one["param_bytes"] == ddp["param_bytes"] == zero1["param_bytes"] == n_bytes
    for key in ("param_bytes", "grad_bytes", "optim_bytes"):
        shards = fsdp[f"{key}_per_rank"]                # FSDP2: each rank a half, adding up
        assert sum(shards) == pytest.approx(ddp[key], rel=1e-3), key
        assert max(shards) == pytest.approx(ddp[key] / 2, rel=0.05), (key, shards)
    parts = zero1["optim_bytes_per_rank"]               # ZeRO-1: the AdamW state split
    assert sum(parts) == pytest.approx(ddp["optim_bytes"], rel=1e-3)
    assert max(parts) == pytest.approx(ddp["optim_bytes"] / 2, rel=0.2), parts
    assert zero1["grad_bytes"] == ddp["grad_bytes"] == n_bytes
    for r in rows.values():                             # the planner's weights = what ranks hold
        assert r["plan_param_bytes"] == r["weight_bytes"], r["strategy"]
    for s in ("ddp", "fsdp", "zero1"):
        assert all(ms > 0 for ms in rows[s]["comm_ms_per_rank"]), s
        assert rows[s]["efficiency"] == pytest.approx(rows[s]["tok_s"] / (2 * one["tok_s"]))
    assert not (tmp_path / "runs" / "bench").exists()  # a smoke run saves no figures


@pytest.mark.stretch
def test_bad_flags_end_with_one_line_and_exit_2(tmp_path):
    p = _run(["--strategies", "ddp,tp"], tmp_path, timeout=60)
    assert p.returncode == 2
    assert "unknown strategies ['tp']" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = _run(["--data", tmp_path / "nowhere"], tmp_path, timeout=60)
    assert p.returncode == 2 and "not a week02 prepared folder" in p.stderr
