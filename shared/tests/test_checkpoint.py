"""Checkpoint IO: round trips, atomicity, and clear errors for bad files."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from shared.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    read_meta,
    save_checkpoint,
    save_model,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _model():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    m[1].weight = m[0].weight  # tied weights, as in GPT's LM head
    return m


def test_nested_state_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    opt_state = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(2, 3, generator=g)}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "params": [0], "name": None}],
    }
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "opt": opt_state, "step": 7,
             "np_rng": np.random.RandomState(0).get_state()[1][:5], "torch_rng": torch.get_rng_state(),
             "dtype": torch.bfloat16}
    path = save_checkpoint(tmp_path / "ck.safetensors", state, {"kind": "test", "step": 7})
    back, meta = load_checkpoint(path)
    assert meta == {"kind": "test", "step": 7}
    assert torch.equal(back["model"]["w"], state["model"]["w"])
    assert back["opt"]["state"][0]["exp_avg"].equal(opt_state["state"][0]["exp_avg"])
    assert back["opt"]["param_groups"][0]["betas"] == (0.9, 0.95)  # tuples stay tuples
    assert list(back["opt"]["state"]) == [0]  # int keys stay ints (optimizer state uses them)
    assert np.array_equal(back["np_rng"], state["np_rng"]) and back["np_rng"].dtype == state["np_rng"].dtype
    assert torch.equal(back["torch_rng"], state["torch_rng"])
    assert back["dtype"] is torch.bfloat16 and back["step"] == 7
    assert read_meta(path)["step"] == 7


def test_tied_weights_stored_once_and_readable_by_safetensors(tmp_path):
    m = _model()
    path = save_model(tmp_path / "m.safetensors", m, {"arch": "toy"})
    flat = load_file(str(path))  # a plain safetensors reader opens it
    assert len(flat) == 2  # embedding weight (shared with the head) + head bias
    m2 = _model()
    with torch.no_grad():
        for p in m2.parameters():
            p.zero_()
    assert load_weights(m2, path, expect={"arch": "toy"}) == {"arch": "toy"}
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_mismatched_model_names_the_problem(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _model())
    other = torch.nn.Sequential(torch.nn.Embedding(12, 4), torch.nn.Linear(4, 12))
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*shape mismatch.*0\.weight"):
        load_weights(other, path)
    with pytest.raises(CheckpointError, match="meta\\['arch'\\] is '<missing>', expected 'gpt'"):
        load_checkpoint(path, expect={"arch": "gpt"})


@pytest.mark.parametrize("keep", [0, 5, 100, -10])
def test_truncated_file_raises_clear_error(tmp_path, keep):
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    path = save_checkpoint(tmp_path / "ck.safetensors", {"w": w})
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(CheckpointError, match=r"ck\.safetensors.*(truncated|corrupt)"):
        load_checkpoint(path)


def test_missing_file_and_bad_values(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(TypeError, match="root/x.*set"):
        save_checkpoint(tmp_path / "bad.safetensors", {"root": {"x": {1, 2}}})
    assert not (tmp_path / "bad.safetensors").exists()


def test_write_killed_half_way_keeps_previous_checkpoint(tmp_path):
    """A writer SIGKILLed while writing leaves the old file loadable and no partial file."""
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, {"w": torch.zeros(3)}, {"step": 1})
    code = f"""
import os, signal, torch, safetensors.torch as st
from shared.checkpoint import save_checkpoint
real = st.save_file
def dying(tensors, filename, metadata=None):
    real(tensors, filename, metadata=metadata)
    with open(filename, "r+b") as f:          # simulate a half-written temp file
        f.truncate(os.path.getsize(filename) // 2)
    os.kill(os.getpid(), signal.SIGKILL)
import shared.checkpoint as ck
ck.save_file = dying
save_checkpoint({str(path)!r}, {{"w": torch.ones(1000)}}, {{"step": 2}})
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    state, meta = load_checkpoint(path)
    assert meta == {"step": 1} and torch.equal(state["w"], torch.zeros(3))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ck.safetensors"]
    assert leftovers and all(name.startswith(".ck.safetensors.tmp-") for name in leftovers)
    save_checkpoint(path, {"w": torch.ones(2)}, {"step": 3})  # the next save sweeps the dead writer's temp
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]


def test_write_json_atomic_replaces_whole_files_or_leaves_the_old_one(tmp_path):
    import json

    from shared import write_json_atomic

    path = write_json_atomic(tmp_path / "sub" / "fit.json", {"alpha": 0.33, "sizes": [1, 2]})
    assert json.loads(path.read_text()) == {"alpha": 0.33, "sizes": [1, 2]}
    write_json_atomic(path, {"alpha": 0.34})
    assert json.loads(path.read_text()) == {"alpha": 0.34}

    class Circular(dict):
        pass

    bad = Circular()
    bad["me"] = bad                                  # JSON cannot hold it: nothing is written
    with pytest.raises(ValueError):
        write_json_atomic(path, bad)
    assert json.loads(path.read_text()) == {"alpha": 0.34}
    assert sorted(p.name for p in path.parent.iterdir()) == ["fit.json"]   # no temp left
