"""Adapter store: round trip, hash checks, and nothing lost when a save is killed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.nn as nn

from shared import CheckpointError
from week06_lora import inject_lora, lora_state_dict
from week07_continual import AdapterStore

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))


def _fill(model, adapter, value):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if f".lora.{adapter}." in n:
                p.fill_(value)


def test_round_trip_and_replace(tmp_path):
    m = inject_lora(_model(), targets=["0", "2"], r=2, alpha=4, adapter="t0")
    _fill(m, "t0", 0.5)
    store = AdapterStore(tmp_path / "s")
    store.save("t0", m, meta={"task": "A"})
    fresh = _model()
    AdapterStore(tmp_path / "s").load("t0", fresh)  # a new process would see the same
    for k, v in lora_state_dict(m, "t0").items():
        assert torch.equal(lora_state_dict(fresh, "t0")[k], v)
    assert store.entry("t0")["meta"] == {"task": "A"}
    _fill(m, "t0", 0.25)
    store.save("t0", m)  # replacing: the old file goes once the new one is committed
    assert len(list((tmp_path / "s" / "adapters").iterdir())) == 1
    store.save_blob("router", {"x": torch.arange(3)})
    state, _ = store.load_blob("router")
    assert torch.equal(state["x"], torch.arange(3))
    store.delete("t0")
    assert "t0" not in AdapterStore(tmp_path / "s")


def test_tampered_or_missing_file_is_reported(tmp_path):
    m = inject_lora(_model(), targets=["0"], r=2, alpha=4, adapter="a")
    store = AdapterStore(tmp_path)
    path = store.save("a", m)
    with open(path, "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x01\x02\x03\x04")  # B starts at zero: write non-zeros
    with pytest.raises(CheckpointError, match="SHA-256"):
        store.load("a", _model())
    path.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        store.load("a", _model())
    with pytest.raises(KeyError, match="stored"):
        store.load("nope", _model())


def test_crash_between_file_and_manifest_keeps_the_old_state(tmp_path, monkeypatch):
    m = inject_lora(_model(), targets=["0"], r=2, alpha=4, adapter="a")
    _fill(m, "a", 1.0)
    store = AdapterStore(tmp_path)
    store.save("a", m)
    before = (tmp_path / "manifest.json").read_text()
    _fill(m, "a", 2.0)
    real_replace = os.replace

    def boom(src, dst):
        if str(dst).endswith("manifest.json"):
            raise OSError("simulated crash at the commit point")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        store.save("a", m)
    monkeypatch.setattr(os, "replace", real_replace)
    assert (tmp_path / "manifest.json").read_text() == before
    reopened = AdapterStore(tmp_path)
    fresh = _model()
    reopened.load("a", fresh)
    assert all(bool((v == 1.0).all()) for v in lora_state_dict(fresh, "a").values())
    assert reopened.gc()  # the uncommitted file (and temp manifest) are orphans
    assert len(list((tmp_path / "adapters").iterdir())) == 1


_WRITER = textwrap.dedent("""
    import sys, torch, torch.nn as nn
    from week06_lora import inject_lora
    from week07_continual import AdapterStore
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    inject_lora(m, targets=["0", "2"], r=16, alpha=16, adapter="a")
    store = AdapterStore(sys.argv[1])
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        with torch.no_grad():
            for n, p in m.named_parameters():
                if ".lora." in n:
                    p.fill_(float(i))
        store.save(f"a{i % 5}", m, adapter="a", meta={"value": i})
""")


def test_kill_during_saves_loses_nothing_committed(tmp_path):
    """SIGKILL a process that saves adapters in a tight loop, at several moments.

    After each kill every adapter the manifest lists must load, pass its hash
    check, and hold exactly the values recorded with it.
    """
    root = tmp_path / "store"
    for delay in (0.05, 0.2, 0.45):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = AdapterStore(root)
        assert json.loads((root / "manifest.json").read_text())["format"]
        for name in store.names():
            fresh = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
            store.load(name, fresh, adapter="a")
            value = store.entry(name)["meta"]["value"]
            for v in lora_state_dict(fresh, "a").values():
                assert bool((v == float(value)).all())
        store.gc()
    assert len(AdapterStore(root)) > 0


def test_hierarchical_names_get_a_safe_file_and_keep_their_name(tmp_path):
    """A name with "/" (a path of nested adapters) is stored under a slug of it, flat in
    adapters/, and loads, replaces, deletes and survives gc like any other."""
    m = inject_lora(_model(), targets=["0"], r=2, alpha=4, adapter="a")
    _fill(m, "a", 0.5)
    store = AdapterStore(tmp_path)
    path = store.save("domain/task/user", m, adapter="a")
    store.save("domain_task_user", m, adapter="a")  # the same slug: its own file
    assert path.parent == tmp_path / "adapters" and "/" not in path.name
    assert len(list((tmp_path / "adapters").iterdir())) == 2
    reopened = AdapterStore(tmp_path)
    assert reopened.names() == ["domain/task/user", "domain_task_user"]
    fresh = _model()
    assert reopened.load("domain/task/user", fresh) == "domain/task/user"
    assert all(bool((v == 0.5).all()) for v in lora_state_dict(fresh, "domain/task/user").values())
    assert reopened.verified_path("domain/task/user") == path
    _fill(m, "a", 0.25)
    reopened.save("domain/task/user", m, adapter="a")
    assert not path.exists() and reopened.gc() == []
    reopened.delete("domain/task/user")
    assert len(list((tmp_path / "adapters").iterdir())) == 1
