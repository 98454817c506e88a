"""The embedded corpus, local corpora, devices and seeding."""

import argparse
import random

import numpy as np
import pytest
import torch

from shared import (
    Tokenizer,
    add_threads_argument,
    is_smoke,
    load_corpus,
    pick_device,
    pick_dtype,
    seed_everything,
    set_threads,
    smoke,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_pydocs_is_real_deterministic_and_split():
    c = load_corpus("pydocs")
    assert len(c.text) > 1_000_000  # about 2 MB of English in CPython 3.11
    names = [d.name for d in c.documents]
    assert names[0].startswith("topic:") and any(n.startswith("doc:json") for n in names)
    assert "assert" in c.text and "Return" in c.text
    assert len(set(names)) == len(names)
    train, val = {d.name for d in c.train_docs}, {d.name for d in c.val_docs}
    assert not train & val and len(train) + len(val) == len(c)
    assert 0.05 < len(val) / len(c) < 0.15  # val_fraction=0.1, hash split
    assert load_corpus("pydocs").text == c.text


def test_local_corpus_files_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# title\nbody")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    c = load_corpus(tmp_path, val_fraction=0.0)
    assert [d.name for d in c.documents] == ["a.txt", "sub/b.md"]
    assert c.train == "hello world\n\n# title\nbody" and c.val == ""
    assert load_corpus(tmp_path / "a.txt").text == "hello world"


def test_unknown_corpus_lists_valid_names():
    with pytest.raises(ValueError, match="unknown corpus 'tinystoriez'.*pydocs"):
        load_corpus("tinystoriez")
    with pytest.raises(ValueError, match="val_fraction"):
        load_corpus("pydocs", val_fraction=1.5)


def test_device_and_dtype():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in ("cuda", "mps", "cpu")
    assert pick_dtype("cpu") == torch.float32
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_seed_everything_repeats_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(3)
    a = draw()
    seed_everything(3)
    assert draw() == a
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_threads_flag_parses_checks_and_applies():
    ap = argparse.ArgumentParser()
    add_threads_argument(ap)
    assert ap.parse_args([]).threads == 1
    assert ap.parse_args(["--threads", "0"]).threads == 0
    for bad in ("-1", "two"):
        with pytest.raises(SystemExit):
            ap.parse_args(["--threads", bad])
    before = torch.get_num_threads()
    try:
        assert set_threads(0) == before and set_threads(None) == before  # 0/None: leave it
        assert set_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_smoke_switch(monkeypatch):
    monkeypatch.setenv("NANOCHAT_SMOKE", "1")
    assert is_smoke() and smoke(1000, 10) == 10
    monkeypatch.setenv("NANOCHAT_SMOKE", "0")
    assert not is_smoke() and smoke(1000, 10) == 1000


def test_protocols_are_structural():
    class Chars:
        vocab_size = 256

        def encode(self, text):
            return list(text.encode())

        def decode(self, ids):
            return bytes(ids).decode()

    assert isinstance(Chars(), Tokenizer)
    assert not isinstance(object(), Tokenizer)


def test_pydocs_cache_round_trip(tmp_path, monkeypatch):
    from shared import data

    monkeypatch.setenv("NANOCHAT_CACHE", str(tmp_path))
    data._pydocs_documents.cache_clear()
    try:
        first = data._pydocs_documents()
        files = list(tmp_path.glob("pydocs-*.json"))
        assert len(files) == 1
        data._pydocs_documents.cache_clear()
        assert data._pydocs_documents() == first  # read back from the cache, identical
        files[0].write_text("{not json")  # a damaged cache is rebuilt, not fatal
        data._pydocs_documents.cache_clear()
        assert data._pydocs_documents() == first
        monkeypatch.setenv("NANOCHAT_CACHE", "off")
        assert data.cache_dir() is None
    finally:
        data._pydocs_documents.cache_clear()
