"""VectorIndex against exact search, and DocumentStore's saves (atomic, verified, killable).

The approximate kinds are measured on clustered random unit vectors (50
centres, noise 0.2 per coordinate in 64 dims), the shape real embeddings
have. On vectors spread uniformly over the sphere every point's neighbours
are barely nearer than the rest, so IVF's cells cut through every
neighbourhood (nprobe=8 of 63 cells finds ~45% there); HNSW is checked on
those too.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from shared import CheckpointError
from week04_modern_arch_tools.tooldata import make_fact_store
from week10_hydra.encoders import HashEncoder
from week10_hydra.index import VectorIndex
from week10_hydra.retrieval import MANIFEST, DocumentStore

pytestmark = pytest.mark.core

QUERIES = ["capital of Lunnykaia", "Its currency is the grel", "founded in 1203",
           "People there speak Velti"]


def unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def clustered(n, d=64, centres=50, noise=0.2, seed=0):
    """``n`` unit vectors around the same 50 centres whatever ``seed`` (queries and data)."""
    c = unit(np.random.default_rng(100).standard_normal((centres, d)))
    rng = np.random.default_rng(seed)
    return unit(c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, d)))


def recall_vs_exact(ids, exact_ids):
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, exact_ids)]))


def results(store, modes=("dense", "bm25", "hybrid")):
    return {m: [[(h.source, round(h.score, 6)) for h in hits]
                for hits in store.search_batch(QUERIES, k=5, mode=m)] for m in modes}


# ---------------------------------------------------------------- the index


def test_flat_equals_brute_force_cosine():
    x, q = clustered(500, seed=1), clustered(20, seed=2)
    scores, ids = VectorIndex(64, kind="flat").add(x).search(q, 10)
    sims = q @ x.T  # (Q, N) cosines: the rows are unit vectors
    want = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(scores, np.take_along_axis(sims, want, 1), atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_recall_at_10_vs_flat(kind):
    x, q = clustered(4000, seed=3), clustered(200, seed=4)
    _, exact = VectorIndex(64, kind="flat").add(x).search(q, 10)
    index = VectorIndex(64, kind=kind).add(x)
    assert index.active_kind == kind
    _, ids = index.search(q, 10)
    assert recall_vs_exact(ids, exact) >= 0.9


def test_hnsw_recall_on_uniform_random_vectors():
    rng = np.random.default_rng(5)
    x, q = unit(rng.standard_normal((3000, 64))), unit(rng.standard_normal((100, 64)))
    _, exact = VectorIndex(64, kind="flat").add(x).search(q, 10)
    _, ids = VectorIndex(64, kind="hnsw").add(x).search(q, 10)
    assert recall_vs_exact(ids, exact) >= 0.9


def test_auto_is_exact_below_the_threshold_and_hnsw_from_it():
    x, q = clustered(1200, seed=6), clustered(50, seed=7)
    auto = VectorIndex(64, kind="auto", auto_threshold=1000).add(x[:600])
    assert auto.active_kind == "flat"
    s_flat, i_flat = VectorIndex(64, kind="flat").add(x[:600]).search(q, 5)
    s_auto, i_auto = auto.search(q, 5)
    np.testing.assert_array_equal(i_auto, i_flat)
    auto.add(x[600:])  # crosses 1000: rebuilt as HNSW, ids continue
    assert auto.active_kind == "hnsw" and len(auto) == 1200
    _, exact = VectorIndex(64, kind="flat").add(x).search(q, 10)
    assert recall_vs_exact(auto.search(q, 10)[1], exact) >= 0.9


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_bytes_round_trip_searches_the_same(kind):
    x, q = clustered(800, seed=8), clustered(30, seed=9)
    index = VectorIndex(64, kind=kind, nprobe=4).add(x)
    again = VectorIndex.from_bytes(index.to_bytes(), 64, **index.config_dict())
    assert again.active_kind == kind and len(again) == 800
    for a, b in zip(index.search(q, 7), again.search(q, 7)):
        np.testing.assert_array_equal(a, b)


def test_k_beyond_the_size_and_an_empty_index():
    x = clustered(5, seed=10)
    scores, ids = VectorIndex(64, kind="flat").add(x).search(x[:2], 10)
    assert ids.shape == (2, 5) and (ids >= 0).all() and ids[0, 0] == 0 and ids[1, 0] == 1
    assert VectorIndex(64).search(x[:2], 3)[1].shape == (2, 0)


def test_bad_input_is_refused_with_a_reason():
    index = VectorIndex(8, kind="flat")
    with pytest.raises(ValueError, match="shape"):
        index.add(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="L2-normalised"):
        index.add(np.ones((3, 8), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((1, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="unknown index kind.*valid"):
        VectorIndex(8, kind="lsh")
    with pytest.raises(ValueError, match="k must be"):
        index.search(unit(np.ones((1, 8))), 0)
    with pytest.raises(ValueError, match="IVF.*at least 10"):
        VectorIndex(8, kind="ivf", nlist=10).add(unit(np.ones((3, 8))))


# ---------------------------------------------------------------- saving


@pytest.fixture
def saved(tmp_path):
    store = DocumentStore(HashEncoder(64), progress=False)
    store.add_documents(make_fact_store(seed=2, n=60))
    folder = store.save(tmp_path / "store")
    return store, folder, results(store)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip_searches_the_same(tmp_path, kind):
    store = DocumentStore(HashEncoder(64), kind=kind, progress=False)
    store.add_documents(make_fact_store(seed=2, n=60))
    loaded = DocumentStore.load(store.save(tmp_path / kind), HashEncoder(64), progress=False)
    assert loaded.index.active_kind == kind and loaded.chunks == store.chunks
    assert results(loaded) == results(store)


def test_a_new_generation_replaces_the_old_files(saved):
    store, folder, _ = saved
    store.add_documents([("extra", "Brandnewland is a country. Its capital is Nowhere.")])
    store.save(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["generation"] == 2 and manifest["counts"]["chunks"] == 61
    named = {e["file"] for e in manifest["files"].values()} | {MANIFEST}
    assert {p.name for p in folder.iterdir()} == named  # generation 1's files are gone
    assert DocumentStore.load(folder, HashEncoder(64)).search("Nowhere", 1)[0].source == "extra#0"


@pytest.mark.parametrize("fail_at", ["index-", "chunks-", MANIFEST])
def test_a_failed_save_leaves_the_previous_generation(saved, monkeypatch, fail_at):
    store, folder, before = saved
    store.add_documents([("extra", "Brandnewland is a country.")])
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name.startswith(fail_at):
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        store.save(folder)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not list(folder.glob(".*tmp*"))  # the temp file of the failed write is removed
    old = DocumentStore.load(folder, HashEncoder(64), progress=False)
    assert len(old) == 60 and results(old) == before
    store.save(folder)  # the next save commits and removes what the failed one left
    assert len(list(folder.glob("index-*"))) == 1 and len(DocumentStore.load(folder, HashEncoder(64))) == 61


_CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from week10_hydra.encoders import HashEncoder
    from week10_hydra.retrieval import DocumentStore
    folder, point = Path(sys.argv[1]), sys.argv[2]
    store = DocumentStore(HashEncoder(64), progress=False)
    words = " ".join(f"w{j}" for j in range(80))
    store.add_documents([(f"big{i}", f"{words} n{i}") for i in range(1500)])
    real_replace = os.replace
    def replace(src, dst):  # stop right before the rename that `point` names
        if Path(dst).name.startswith(point):
            print("ready", flush=True)
            time.sleep(120)
        return real_replace(src, dst)
    os.replace = replace
    print("built", flush=True)
    sys.stdin.readline()  # the parent says when (it watches for the first temp file)
    store.save(folder)
""")


def test_a_save_killed_by_sigkill_leaves_the_previous_generation(saved, tmp_path):
    """Real processes killed with SIGKILL during a save of a 1,500-chunk store: right before
    the manifest's rename (every new file written), and as soon as its first temp file
    appears (mid-write). (A failure before the index file's rename: the test above.)"""
    _, folder, before = saved
    procs = {}
    for point in (MANIFEST, "mid-write"):
        dest = tmp_path / f"copy-{point.strip('.-')}"
        dest.mkdir()
        for f in folder.iterdir():
            (dest / f.name).write_bytes(f.read_bytes())
        procs[point] = dest, subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(dest), point], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for point, (dest, proc) in procs.items():
        assert proc.stdout.readline().strip() == "built", f"the child for {point} failed"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if point == "mid-write":
            while not list(dest.glob(".*.tmp-*")) and proc.poll() is None:
                time.sleep(0.001)
        else:
            assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        loaded = DocumentStore.load(dest, HashEncoder(64), progress=False)
        assert len(loaded) == 60 and results(loaded) == before


def test_corrupt_missing_or_foreign_files_are_clear_errors(saved):
    _, folder, _ = saved
    manifest = json.loads((folder / MANIFEST).read_text())
    index_file = folder / manifest["files"]["index"]["file"]
    good = index_file.read_bytes()
    index_file.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="SHA-256"):
        DocumentStore.load(folder, HashEncoder(64))
    index_file.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        DocumentStore.load(folder, HashEncoder(64))
    (folder / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        DocumentStore.load(folder, HashEncoder(64))
    with pytest.raises(CheckpointError, match="no document store"):
        DocumentStore.load(folder / "nowhere", HashEncoder(64))


def test_a_different_encoder_is_refused(saved):
    _, folder, _ = saved
    with pytest.raises(CheckpointError, match=r"built with encoder 'hash-bow:64' \(dim 64\)"):
        DocumentStore.load(folder, HashEncoder(128))
    other = HashEncoder(64)
    other.name = "someone-else:64"  # same dim, another model: its vectors mean something else
    with pytest.raises(CheckpointError, match="someone-else"):
        DocumentStore.load(folder, other)
