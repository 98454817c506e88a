"""Data pipeline: sources, prepare (shards, workers, dtypes), TokenLoader, bits per byte."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from week02_bpe import (
    BPETokenizer,
    HFSource,
    TokenLoader,
    bits_per_byte,
    iter_documents,
    parse_source,
    prepare,
    read_index,
    token_bytes,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.fixture(scope="module")
def docs():
    """60 short documents of varied length (some longer than a block)."""
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "déjà", "vu", "🙂", "print(x)", "42", "\n"]
    return [f"doc {i}: " + " ".join(rng.choice(words, size=int(rng.integers(3, 120))))
            for i in range(60)]


def _all_tokens(out_dir, split):
    index = read_index(out_dir)
    dtype = np.dtype(index["dtype"])
    parts = [np.fromfile(out_dir / s["file"], dtype=dtype) for s in index["splits"][split]["shards"]]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _split_docs(tokens, bos):
    starts = list(np.flatnonzero(tokens == bos)) + [len(tokens)]
    return [tokens[a:b].tolist() for a, b in zip(starts, starts[1:])]


# ---------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------


def test_prepare_layout_and_contents(docs, tok1k, tmp_path):
    out = tmp_path / "data"
    index_path = prepare(docs, tok1k, out, shard_tokens=500, num_workers=1, val_fraction=0.2,
                         progress=False)
    assert index_path == out / "index.json"
    index = read_index(out)
    assert index["dtype"] == "uint16" and index["vocab_size"] == 1024
    assert index["bos_id"] == tok1k.bos_id
    got = []
    for split in ("train", "val"):
        info = index["splits"][split]
        assert [s["file"] for s in info["shards"]] == [f"{split}_{k:06d}.bin"
                                                       for k in range(len(info["shards"]))]
        assert all(s["tokens"] == 500 for s in info["shards"][:-1])  # only the last is partial
        tokens = _all_tokens(out, split)
        assert len(tokens) == info["tokens"]
        split_docs = _split_docs(tokens, tok1k.bos_id)
        assert len(split_docs) == info["documents"]
        got += [tok1k.decode(d[1:]) for d in split_docs]  # every document starts with BOS
    assert sorted(got) == sorted(docs)
    assert 0 < index["splits"]["val"]["documents"] < len(docs)
    assert BPETokenizer.load(out / index["tokenizer"]).mergeable_ranks() == tok1k.mergeable_ranks()
    # a second run into the same folder replaces its shards and nothing else
    (out / "keep.bin").write_bytes(b"user data")
    prepare(docs[:3], tok1k, out, num_workers=1, val_fraction=0.0, progress=False)
    assert sorted(p.name for p in out.glob("*.bin")) == ["keep.bin", "train_000000.bin"]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_prepare_workers_give_identical_shards(docs, tiny_tok, tmp_path, start_method):
    serial = prepare(docs, tiny_tok, tmp_path / "serial", num_workers=0, progress=False).parent
    pooled = prepare(docs, tiny_tok, tmp_path / "pool", num_workers=2, start_method=start_method,
                     progress=False, docs_per_task=7).parent
    for split in ("train", "val"):
        assert np.array_equal(_all_tokens(serial, split), _all_tokens(pooled, split))


def test_prepare_with_tiktoken_encoder_is_identical(docs, tok1k, tmp_path):
    ours = prepare(docs, tok1k, tmp_path / "py", num_workers=1, progress=False).parent
    fast = prepare(docs, tok1k, tmp_path / "tt", num_workers=2, encoder="tiktoken",
                   progress=False).parent
    for split in ("train", "val"):
        assert np.array_equal(_all_tokens(ours, split), _all_tokens(fast, split))
    with pytest.raises(ValueError, match="encoder must be"):
        prepare(docs, tok1k, tmp_path / "x", encoder="rust", progress=False)


def test_prepare_uses_uint32_for_big_vocabularies(tmp_path):
    """65,300 merges + 256 bytes + 9 specials = 65,565 ids: more than uint16 holds."""
    merges = [(a, b) for a in range(256) for b in range(256)][:65_300]
    big = BPETokenizer(merges)
    out = prepare(["ab" * 50, "zz top"] * 4, big, tmp_path / "big", num_workers=1,
                  val_fraction=0.0, progress=False).parent
    assert read_index(out)["dtype"] == "uint32"
    tokens = _all_tokens(out, "train")
    assert tokens.max() == big.bos_id > 2**16
    loader = TokenLoader(out, batch_size=2, block_size=8)
    x, _ = loader.next_batch()
    assert x.max().item() <= big.vocab_size


def test_prepare_pydocs_uses_the_shared_split(tiny_tok, tmp_path):
    from shared import load_corpus
    corpus = load_corpus("pydocs", val_fraction=0.1)
    out = prepare("pydocs", tiny_tok, tmp_path / "pydocs", num_workers=2, progress=False).parent
    index = read_index(out)
    assert index["splits"]["train"]["documents"] == len(corpus.train_docs)
    assert index["splits"]["val"]["documents"] == len(corpus.val_docs)


def test_local_text_folder_source(tiny_tok, tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("first file text", encoding="utf-8")
    (folder / "b.md").write_text("# second\nfile", encoding="utf-8")
    assert [t for _, t in iter_documents(folder)] == ["first file text", "# second\nfile"]
    out = prepare(folder, tiny_tok, tmp_path / "out", num_workers=1, val_fraction=0.0,
                  progress=False).parent
    assert read_index(out)["splits"]["train"]["documents"] == 2


def test_source_names():
    """The real corpora resolve to the hub names that load_dataset streams."""
    assert parse_source("tinystories") == HFSource("roneneldan/TinyStories")
    assert parse_source("fineweb-edu") == HFSource("HuggingFaceFW/fineweb-edu", name="sample-10BT")
    assert parse_source("hf:HuggingFaceTB/smoltalk:all") == HFSource("HuggingFaceTB/smoltalk",
                                                                      name="all")
    assert parse_source("x.parquet") == HFSource("parquet", data_files="x.parquet")
    assert parse_source("x.jsonl") == HFSource("json", data_files="x.jsonl")
    assert parse_source("pydocs") == "pydocs"


def test_bad_sources(tiny_tok, tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        list(iter_documents("no-such-corpus"))
    with pytest.raises(TypeError, match="documents must be str"):
        prepare([b"bytes"], tiny_tok, tmp_path / "x", num_workers=1, progress=False)


# ---------------------------------------------------------------------------
# Hugging Face datasets, on local files in the real schemas
# ---------------------------------------------------------------------------


def test_hf_streaming_parquet_and_jsonl(docs, tiny_tok, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # TinyStories: a single "text" column; FineWeb-EDU: text plus metadata columns
    stories = docs[:20]
    pq.write_table(pa.table({"text": stories}), tmp_path / "tinystories.parquet")
    edu = {"text": docs[20:40], "id": [f"<urn:{i}>" for i in range(20)],
           "dump": ["CC-MAIN-2024-10"] * 20, "url": [f"https://x/{i}" for i in range(20)],
           "score": [3.1] * 20, "int_score": [3] * 20, "language": ["en"] * 20}
    pq.write_table(pa.table(edu), tmp_path / "fineweb-edu.parquet")
    with open(tmp_path / "stories.jsonl", "w", encoding="utf-8") as f:
        for t in docs[40:]:
            f.write(json.dumps({"text": t, "source": "gpt4"}) + "\n")

    cache = str(tmp_path / "hf-cache")
    for spec, expected in [
        (HFSource("parquet", data_files=str(tmp_path / "tinystories.parquet"), cache_dir=cache),
         stories),
        (HFSource("parquet", data_files=str(tmp_path / "fineweb-edu.parquet"), cache_dir=cache),
         docs[20:40]),
        (HFSource("json", data_files=str(tmp_path / "stories.jsonl"), cache_dir=cache), docs[40:]),
    ]:
        assert [t for _, t in iter_documents(spec)] == expected
    limited = HFSource("parquet", data_files=str(tmp_path / "tinystories.parquet"), limit=5,
                       cache_dir=cache)
    assert len(list(iter_documents(limited))) == 5
    with pytest.raises(KeyError, match="no column 'story'"):
        list(iter_documents(HFSource("parquet", data_files=str(tmp_path / "tinystories.parquet"),
                                     text_field="story", cache_dir=cache)))
    # a path ending in .parquet is read through the same code
    via_hf = prepare(str(tmp_path / "tinystories.parquet"), tiny_tok, tmp_path / "a",
                     num_workers=1, progress=False).parent
    via_list = prepare(stories, tiny_tok, tmp_path / "b", num_workers=1, progress=False).parent
    for split in ("train", "val"):
        assert np.array_equal(_all_tokens(via_hf, split), _all_tokens(via_list, split))


# ---------------------------------------------------------------------------
# TokenLoader
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(docs, tok1k, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    prepare(docs * 3, tok1k, out, shard_tokens=1500, num_workers=1, val_fraction=0.2,
            progress=False)
    return out


def test_loader_batches(prepared):
    loader = TokenLoader(prepared, batch_size=4, block_size=16, seed=0)
    assert loader.vocab_size == 1024
    x, y = loader.next_batch()
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    # every row is a real window of T + 1 consecutive tokens from some shard
    index = read_index(prepared)
    shards = [np.fromfile(prepared / s["file"], dtype=np.uint16)
              for s in index["splits"]["train"]["shards"]]
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        window = row_x + row_y[-1:]
        assert any(_contains(s, window) for s in shards)
    assert loader.tokens_seen == 4 * 16


def _contains(arr, window):
    w = np.asarray(window, dtype=arr.dtype)
    starts = np.flatnonzero(arr[: len(arr) - len(w) + 1] == w[0])
    return any(np.array_equal(arr[s:s + len(w)], w) for s in starts)


def test_loader_epoch_visits_every_window_once(prepared):
    loader = TokenLoader(prepared, batch_size=1, block_size=16, seed=3)
    n = loader.num_windows
    seen = {tuple(loader.next_batch()[0][0].tolist()) for _ in range(n)}
    assert loader.epoch == 0 and loader.cursor == n
    assert len(seen) == n  # n distinct windows (the corpus repeats, but offsets differ per shard)
    loader.next_batch()
    assert loader.epoch == 1


def test_loader_is_deterministic_and_resumes_exactly(prepared):
    a = TokenLoader(prepared, batch_size=3, block_size=16, seed=7)
    b = TokenLoader(prepared, batch_size=3, block_size=16, seed=7)
    c = TokenLoader(prepared, batch_size=3, block_size=16, seed=8)
    xa, xb, xc = a.next_batch()[0], b.next_batch()[0], c.next_batch()[0]
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)
    # run across an epoch boundary, save, and compare the continuation
    for _ in range(a.num_windows // 3 - 1):
        a.next_batch()
    state = json.loads(json.dumps(a.state_dict()))  # plain JSON-able values
    expected = [a.next_batch() for _ in range(5)]
    assert a.epoch == 1
    resumed = TokenLoader(prepared, batch_size=3, block_size=16, seed=0)
    resumed.load_state_dict(state)
    for (ex, ey), (rx, ry) in zip(expected, (resumed.next_batch() for _ in range(5))):
        assert torch.equal(ex, rx) and torch.equal(ey, ry)
    assert resumed.tokens_seen == a.tokens_seen
    it = iter(resumed)
    assert next(it)[0].shape == (3, 16)


def test_rank_shards_are_the_rows_of_the_global_batch_and_resume_at_another_world_size(prepared):
    """Rank r of W serves rows r*B..(r+1)*B-1 of the batch one process with B*W rows draws,
    across an epoch boundary; the state is global, so 2 ranks resume as 1 and as 4."""
    one = TokenLoader(prepared, batch_size=4, block_size=16, seed=5)
    ranks = [TokenLoader(prepared, batch_size=2, block_size=16, seed=5, rank=r, world_size=2)
             for r in range(2)]
    steps = one.num_windows // 4 + 2                      # crosses into epoch 1
    for _ in range(steps):
        x, y = one.next_batch()
        parts = [r.next_batch() for r in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
    assert one.epoch == 1 and ranks[0].state_dict() == ranks[1].state_dict() == one.state_dict()
    state = ranks[1].state_dict()
    expected = [one.next_batch()[0] for _ in range(3)]
    alone = TokenLoader(prepared, batch_size=4, block_size=16, seed=0)
    alone.load_state_dict(state)
    four = [TokenLoader(prepared, batch_size=1, block_size=16, rank=r, world_size=4)
            for r in range(4)]
    for r in four:
        r.load_state_dict(state)
    for ex in expected:
        assert torch.equal(alone.next_batch()[0], ex)
        assert torch.equal(torch.cat([r.next_batch()[0] for r in four]), ex)
    with pytest.raises(ValueError, match="rank must be in"):
        TokenLoader(prepared, batch_size=2, block_size=16, rank=2, world_size=2)


def test_loader_bos_aligned(prepared, tok1k):
    loader = TokenLoader(prepared, batch_size=8, block_size=32, bos_aligned=True, seed=1)
    for _ in range(3):
        x, y = loader.next_batch()
        assert (x[:, 0] == tok1k.bos_id).all()
        assert torch.equal(x[:, 1:], y[:, :-1])


def test_loader_errors(prepared, tmp_path):
    with pytest.raises(ValueError, match="not one window"):
        TokenLoader(prepared, batch_size=1, block_size=100_000)
    with pytest.raises(ValueError, match="unknown split"):
        TokenLoader(prepared, batch_size=1, block_size=8, split="test")
    with pytest.raises(FileNotFoundError, match="index.json"):
        TokenLoader(tmp_path, batch_size=1, block_size=8)
    state = TokenLoader(prepared, batch_size=1, block_size=8).state_dict()
    with pytest.raises(ValueError, match="block_size"):
        TokenLoader(prepared, batch_size=1, block_size=16).load_state_dict(state)


# ---------------------------------------------------------------------------
# token_bytes and bits per byte
# ---------------------------------------------------------------------------


def test_token_bytes(tok1k, samples):
    tb = token_bytes(tok1k)
    assert tb.shape == (1024,) and tb.dtype == torch.int64
    assert (tb[tok1k.bos_id:] == 0).all() and (tb[:256] == 1).all()
    for text in samples:
        ids = tok1k.encode(text)
        assert tb[ids].sum().item() == len(text.encode("utf-8"))
    assert torch.equal(token_bytes(tok1k.to_tiktoken()), tb)


def test_bits_per_byte(tok1k):
    text = "Bits per byte compare models with different tokenizers. 🙂"
    ids = torch.tensor([tok1k.bos_id] + tok1k.encode(text))  # the BOS covers 0 bytes
    tb = token_bytes(tok1k)
    # uniform logits: every token costs ln V nats
    logits = torch.zeros(len(ids), tok1k.vocab_size)
    nats = F.cross_entropy(logits, ids, reduction="none")
    expected = len(ids) * math.log(tok1k.vocab_size) / (math.log(2) * len(text.encode()))
    # float32 cross-entropy: each ln V carries ~1e-7 relative rounding error
    assert bits_per_byte(nats, ids, tb) == pytest.approx(expected, rel=1e-6)
    # any shape; ignored targets (-1) drop out of both sums
    nats2 = torch.rand(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t2 = torch.tensor([[65, 300, -1, 66, tok1k.bos_id], [67, -1, 68, 69, 70]])
    keep = t2 >= 0
    manual = nats2[keep].sum().item() / (math.log(2) * tb[t2[keep]].sum().item())
    # float64 throughout: only summation order differs
    assert bits_per_byte(nats2, t2, tb) == pytest.approx(manual, rel=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        bits_per_byte(nats2, t2[0], tb)
    with pytest.raises(ValueError, match="0 bytes"):
        bits_per_byte(torch.ones(1), torch.tensor([tok1k.bos_id]), tb)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def test_cli(tmp_path, docs):
    text_file = tmp_path / "corpus.txt"
    text_file.write_text("\n\n".join(docs), encoding="utf-8")
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "week02_bpe.prepare", str(text_file), "--vocab-size", "300",
         "--out", str(out), "--workers", "1", "--no-progress", "--val-fraction", "0"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "train: 1 documents" in proc.stdout
    index = read_index(out)
    tok = BPETokenizer.load(out / "tokenizer.json")
    assert tok.vocab_size == index["vocab_size"] == 300
    tokens = _all_tokens(out, "train")
    assert tok.decode(tokens[1:].tolist()) == "\n\n".join(docs)
    bad = subprocess.run([sys.executable, "-m", "week02_bpe.prepare", "nowhere", "--out",
                          str(out), "--vocab-size", "300"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert bad.returncode != 0 and "unknown source" in bad.stderr


def test_importing_the_cli_module_keeps_prepare_callable():
    import week02_bpe
    import week02_bpe.prepare  # noqa: F401  (rebinds the package attribute to the module)
    assert callable(week02_bpe.prepare)
