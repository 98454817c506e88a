"""The token data pipeline: text sources -> sharded token files -> (B, T) batches.

- Sources: the embedded ``pydocs`` corpus of ``shared``, local text files, an
  iterable of strings, and the real corpora (TinyStories, FineWeb-EDU, any
  Hugging Face dataset or local parquet/jsonl files) streamed with ``datasets``.
- ``prepare``: tokenizes documents with a process pool (order preserved, so
  the output is identical for any worker count), prefixes every document with
  ``<|bos|>``, and writes ``{split}_{k:06d}.bin`` shards of raw little-endian
  ``uint16`` (``uint32`` when the vocabulary does not fit) plus ``index.json``
  and a copy of the tokenizer.
- ``TokenLoader``: memory-maps the shards and serves (B, T) int64 inputs and
  targets (targets are the inputs shifted by one token). Each epoch visits
  every window once in an order drawn from ``(seed, epoch)``; the loader's
  whole position is a small dict, so a resumed run continues exactly.
- ``token_bytes`` and ``bits_per_byte``: a tokenizer-independent loss.

  With ``rank`` and ``world_size`` (data parallelism, week11) each rank serves
  its own ``batch_size`` rows of the global batch of ``batch_size * world_size``
  rows that one process would draw: rank r takes rows ``r*B .. (r+1)*B - 1``.
  The position is global, so the state is the same on every rank and resumes
  at any world size that keeps the global batch.

Left out on purpose: windows that cross shard boundaries (a shard is 16M
tokens by default, so the loss is negligible) and on-the-fly tokenization.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from week02_bpe.tokenizer import BPETokenizer

INDEX_FORMAT = "week02-bpe-tokens"
INDEX_VERSION = 1
SPLITS = ("train", "val")

# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------


@dataclass
class HFSource:
    """A dataset streamed with ``datasets.load_dataset(path, name, split=..., streaming=True)``.

    ``path`` is a hub name (``"roneneldan/TinyStories"``) or a builder
    (``"parquet"``, ``"json"``) with ``data_files``; ``text_field`` is the
    column holding the text; ``limit`` stops after that many documents.
    """

    path: str
    name: str | None = None
    split: str = "train"
    text_field: str = "text"
    data_files: str | list[str] | dict | None = None
    limit: int | None = None
    cache_dir: str | None = None
    kwargs: dict = field(default_factory=dict)


# the real corpora by short name
HF_CORPORA = {
    "tinystories": HFSource("roneneldan/TinyStories"),
    "fineweb-edu": HFSource("HuggingFaceFW/fineweb-edu", name="sample-10BT"),
}


def hf_documents(spec: HFSource) -> Iterator[str]:
    """Stream the text column of a Hugging Face dataset (needs ``datasets``)."""
    try:
        import datasets
    except ImportError:
        raise ImportError("streaming Hugging Face corpora needs `datasets`: pip install datasets") \
            from None
    ds = datasets.load_dataset(spec.path, spec.name, split=spec.split, streaming=True,
                               data_files=spec.data_files, cache_dir=spec.cache_dir, **spec.kwargs)
    for i, row in enumerate(ds):
        if spec.limit is not None and i >= spec.limit:
            break
        if spec.text_field not in row:
            raise KeyError(f"dataset {spec.path!r} has no column {spec.text_field!r}; "
                           f"columns are {sorted(row)}")
        yield row[spec.text_field]


def parse_source(source) -> object:
    """Normalise a source: ``"pydocs"``, a short corpus name, ``"hf:path[:name]"``,
    a local path, an ``HFSource``, or an iterable of strings."""
    if isinstance(source, HFSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        key = str(source)
        if key == "pydocs":
            return key
        if key in HF_CORPORA:
            return HF_CORPORA[key]
        if key.startswith("hf:"):
            path, _, name = key[3:].partition(":")
            return HFSource(path, name or None)
        path = Path(key)
        if path.suffix in (".parquet", ".jsonl", ".json"):
            builder = "parquet" if path.suffix == ".parquet" else "json"
            return HFSource(builder, data_files=str(path))
        if path.exists():
            return path
        raise ValueError(f"unknown source {key!r}: use 'pydocs', one of {sorted(HF_CORPORA)}, "
                         "'hf:<dataset>[:<config>]', an HFSource, a text file or folder, "
                         "a .parquet/.jsonl file, or an iterable of strings")
    if isinstance(source, Iterable):
        return source
    raise TypeError(f"cannot read documents from a {type(source).__name__}")


def iter_documents(source) -> Iterator[tuple[str, str]]:
    """``(key, text)`` for every document; ``key`` decides its train/val split."""
    src = parse_source(source)
    if isinstance(src, HFSource):
        for text in hf_documents(src):
            yield text, text
    elif isinstance(src, (str, Path)):
        from shared import load_corpus
        for doc in load_corpus(src).documents:
            yield doc.name, doc.text
    else:
        for text in src:
            if not isinstance(text, str):
                raise TypeError(f"documents must be str, got {type(text).__name__}")
            yield text, text


def _is_val(key: str, val_fraction: float) -> bool:
    """The same stable hash split as ``shared.Corpus`` (by name where there is one)."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return h / 2**64 < val_fraction


# ---------------------------------------------------------------------------
# prepare: tokenize into shards (workers are top-level so 'spawn' works)
# ---------------------------------------------------------------------------

_WORKER = {}  # per process: the encode function and the BOS id


def _init_worker(tokenizer_dict: dict, encoder: str = "python") -> None:
    tok = BPETokenizer.from_dict(tokenizer_dict)
    _WORKER["bos"] = tok.bos_id
    _WORKER["encode"] = tok.to_tiktoken().encode_ordinary if encoder == "tiktoken" \
        else tok.encode_ordinary


def _encode_batch(batch: list[tuple[bool, str]]) -> list[tuple[bool, list[int]]]:
    encode, bos = _WORKER["encode"], _WORKER["bos"]
    return [(is_val, [bos] + encode(text)) for is_val, text in batch]


class _ShardWriter:
    def __init__(self, out_dir: Path, split: str, shard_tokens: int, dtype):
        self.out_dir, self.split, self.shard_tokens, self.dtype = out_dir, split, shard_tokens, dtype
        self.buf = np.empty(shard_tokens, dtype=dtype)
        self.fill = 0
        self.shards: list[dict] = []
        self.documents = 0

    def add(self, ids: list[int]) -> None:
        self.documents += 1
        arr = np.asarray(ids, dtype=self.dtype)
        while len(arr):
            take = min(len(arr), self.shard_tokens - self.fill)
            self.buf[self.fill:self.fill + take] = arr[:take]
            self.fill += take
            arr = arr[take:]
            if self.fill == self.shard_tokens:
                self.flush()

    def flush(self) -> None:
        if self.fill == 0:
            return
        name = f"{self.split}_{len(self.shards):06d}.bin"
        tmp = self.out_dir / (name + ".tmp")
        self.buf[:self.fill].tofile(tmp)
        os.replace(tmp, self.out_dir / name)
        self.shards.append({"file": name, "tokens": int(self.fill)})
        self.fill = 0

    def summary(self) -> dict:
        return {"shards": self.shards, "tokens": sum(s["tokens"] for s in self.shards),
                "documents": self.documents}


def _batched(it: Iterable, n: int) -> Iterator[list]:
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def prepare(source, tokenizer: BPETokenizer | str | os.PathLike, out_dir: str | os.PathLike, *,
            shard_tokens: int = 2**24, num_workers: int | None = None, val_fraction: float = 0.1,
            progress: bool = True, start_method: str | None = None,
            docs_per_task: int = 64, encoder: str = "python") -> Path:
    """Tokenize ``source`` into ``out_dir``; returns ``out_dir/"index.json"``.

    Every document becomes ``[<|bos|>] + encode_ordinary(text)`` and goes to
    ``val`` when a stable hash of its key falls under ``val_fraction``.
    ``num_workers=None`` uses every CPU; 0 or 1 tokenizes in this process.
    The shards are the same for any worker count and start method.
    ``encoder="tiktoken"`` encodes with ``tokenizer.to_tiktoken()`` (same ids,
    several times faster; needs tiktoken), ``"python"`` with our encoder.
    """
    if encoder not in ("python", "tiktoken"):
        raise ValueError(f'encoder must be "python" or "tiktoken", got {encoder!r}')
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = BPETokenizer.load(tokenizer)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be positive, got {shard_tokens}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:  # a re-run replaces the shards of a previous run (only those)
        for old in out_dir.glob(f"{split}_[0-9][0-9][0-9][0-9][0-9][0-9].bin"):
            old.unlink()
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    writers = {s: _ShardWriter(out_dir, s, shard_tokens, dtype) for s in SPLITS}

    docs = ((_is_val(key, val_fraction), text) for key, text in iter_documents(source))
    tasks = _batched(docs, docs_per_task)
    workers = (os.cpu_count() or 1) if num_workers is None else int(num_workers)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(desc="prepare", unit="doc")
    tok_dict = tokenizer.to_dict()
    pool = None
    if workers > 1:
        ctx = mp.get_context(start_method)
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(tok_dict, encoder))
        results = pool.imap(_encode_batch, tasks, chunksize=1)
    else:
        _init_worker(tok_dict, encoder)
        results = map(_encode_batch, tasks)
    try:
        for encoded in results:
            for is_val, ids in encoded:
                writers["val" if is_val else "train"].add(ids)
            if bar is not None:
                bar.update(len(encoded))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.close()
    for w in writers.values():
        w.flush()

    tokenizer.save(out_dir / "tokenizer.json")
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": _describe(source),
        "dtype": np.dtype(dtype).name,
        "vocab_size": tokenizer.vocab_size,
        "bos_id": tokenizer.bos_id,
        "tokenizer": "tokenizer.json",
        "val_fraction": val_fraction,
        "splits": {s: w.summary() for s, w in writers.items()},
    }
    path = out_dir / "index.json"
    tmp = out_dir / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, path)
    return path


def _describe(source) -> str:
    """A short JSON-able description of a source for the index."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, HFSource):
        return f"hf:{source.path}" + (f":{source.name}" if source.name else "") + \
            f" split={source.split}" + (f" data_files={source.data_files}" if source.data_files else "")
    return f"<{type(source).__name__} of documents>"


def read_index(data_dir: str | os.PathLike) -> dict:
    """The ``index.json`` of a prepared folder, checked."""
    path = Path(data_dir) / "index.json"
    if not path.is_file():
        raise FileNotFoundError(f"no index.json in {data_dir}: run week02_bpe.prepare first")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is corrupt: {e}") from None
    if index.get("format") != INDEX_FORMAT or index.get("version") != INDEX_VERSION:
        raise ValueError(f"{path} is not a {INDEX_FORMAT} v{INDEX_VERSION} index "
                         f"(format {index.get('format')!r}, version {index.get('version')!r})")
    return index


# ---------------------------------------------------------------------------
# TokenLoader
# ---------------------------------------------------------------------------


class TokenLoader:
    """Random (B, T) windows from memory-mapped shards, resumable exactly.

    A window is T + 1 consecutive tokens inside one shard: ``x`` is the first
    T, ``y`` the last T. Plain mode tiles each shard with windows starting at
    multiples of T. ``bos_aligned=True`` starts every window at a ``<|bos|>``
    (a document start), so no row begins mid-document; a short document is
    followed by the next ones in the same row (packing). Each epoch visits
    every window once, in a permutation drawn from ``(seed, epoch)``.

    ``rank`` / ``world_size`` shard the batches for data parallelism: every
    rank walks the same global order of ``batch_size * world_size`` rows per
    batch and keeps its own ``batch_size`` of them, so the union over ranks is
    exactly the batch one process with ``batch_size * world_size`` draws.
    """

    def __init__(self, data_dir: str | os.PathLike, batch_size: int, block_size: int,
                 split: str = "train", seed: int = 0, bos_aligned: bool = False,
                 device: str | torch.device = "cpu", rank: int = 0, world_size: int = 1):
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size}, "
                             f"{block_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) and world_size >= 1, got rank "
                             f"{rank}, world_size {world_size}")
        self.rank, self.world_size = int(rank), int(world_size)
        self.data_dir = Path(data_dir)
        self.index = read_index(self.data_dir)
        if split not in self.index["splits"]:
            raise ValueError(f"unknown split {split!r}; {data_dir} has "
                             f"{sorted(self.index['splits'])}")
        self.batch_size, self.block_size, self.split = batch_size, block_size, split
        self.seed, self.bos_aligned = int(seed), bool(bos_aligned)
        self.device = torch.device(device)
        self.vocab_size: int = int(self.index["vocab_size"])
        self.bos_id: int = int(self.index["bos_id"])
        dtype = np.dtype(self.index["dtype"])
        self._shards = [np.memmap(self.data_dir / s["file"], dtype=dtype, mode="r")
                        for s in self.index["splits"][split]["shards"]]
        # window starts per shard, then one flat numbering over all shards
        T = block_size
        starts = []
        for shard in self._shards:
            n = len(shard)
            if bos_aligned:
                s = np.flatnonzero(np.asarray(shard) == self.bos_id)
                s = s[s + T + 1 <= n]
            else:
                s = np.arange(0, max(n - T, 0), T, dtype=np.int64)
            starts.append(s.astype(np.int64))
        self._starts = starts
        self._offsets = np.cumsum([0] + [len(s) for s in starts])
        self.num_windows = int(self._offsets[-1])
        if self.num_windows < 1:
            total = self.index["splits"][split]["tokens"]
            raise ValueError(f"split {split!r} of {data_dir} has {total} tokens: not one window of "
                             f"block_size + 1 = {T + 1} tokens fits"
                             + (" after a <|bos|>" if bos_aligned else "")
                             + "; use a smaller block_size or more data")
        self.epoch = 0
        self.cursor = 0  # windows of this epoch already served
        self.tokens_seen = 0
        self._perm = None

    def _order(self) -> np.ndarray:
        if self._perm is None:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._perm = rng.permutation(self.num_windows)
        return self._perm

    def _window(self, flat: int) -> np.ndarray:
        k = int(np.searchsorted(self._offsets, flat, side="right") - 1)
        start = int(self._starts[k][flat - self._offsets[k]])
        return self._shards[k][start:start + self.block_size + 1]

    @property
    def global_batch_size(self) -> int:
        """Rows of one batch over all ranks (``batch_size * world_size``)."""
        return self.batch_size * self.world_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``, int64 (B, T) each, ``y[:, t] == x[:, t + 1]`` within the data;
        this rank's rows of the global batch."""
        rows = np.empty((self.batch_size, self.block_size + 1), dtype=np.int64)  # (B, T + 1)
        mine = range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        for g in range(self.global_batch_size):      # every rank walks the whole global batch
            if self.cursor >= self.num_windows:
                self.epoch += 1
                self.cursor = 0
                self._perm = None
            if g in mine:
                rows[g - mine.start] = self._window(int(self._order()[self.cursor]))
            self.cursor += 1
        t = torch.from_numpy(rows)
        x, y = t[:, :-1], t[:, 1:]  # (B, T), (B, T)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
            y = y.pin_memory().to(self.device, non_blocking=True)
        else:
            x, y = x.contiguous().to(self.device), y.contiguous().to(self.device)
        self.tokens_seen += self.global_batch_size * self.block_size   # over all ranks
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        """Plain JSON-able values: where in which epoch, for which data and shapes (the
        same on every rank: the position is global)."""
        return {"version": 1, "split": self.split, "seed": self.seed, "epoch": self.epoch,
                "cursor": self.cursor, "tokens_seen": self.tokens_seen,
                "block_size": self.block_size, "bos_aligned": self.bos_aligned,
                "num_windows": self.num_windows}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where the saved loader stopped (same data and block_size)."""
        for key in ("split", "block_size", "bos_aligned", "num_windows"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"loader state was saved with {key}={state.get(key)!r} but this "
                                 f"loader has {key}={getattr(self, key)!r}; they must match")
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self.tokens_seen = int(state["tokens_seen"])
        self._perm = None

    def __repr__(self) -> str:
        ranks = f", rank={self.rank}/{self.world_size}" if self.world_size > 1 else ""
        return (f"TokenLoader({str(self.data_dir)!r}, split={self.split!r}, B={self.batch_size}, "
                f"T={self.block_size}, windows={self.num_windows}, epoch={self.epoch}{ranks})")


# ---------------------------------------------------------------------------
# Bits per byte
# ---------------------------------------------------------------------------


def token_bytes(tokenizer) -> torch.Tensor:
    """(V,) int64: the UTF-8 byte length of each token, 0 for special tokens.

    Works for a ``BPETokenizer`` and for a ``tiktoken.Encoding``.
    """
    if isinstance(tokenizer, BPETokenizer):
        lengths = [len(b) for b in tokenizer.vocab] + [0] * len(tokenizer.special_tokens)
        return torch.tensor(lengths, dtype=torch.long)
    if hasattr(tokenizer, "decode_single_token_bytes") and hasattr(tokenizer, "n_vocab"):
        specials = set(getattr(tokenizer, "special_tokens_set", ()))
        special_ids = {tokenizer.encode_single_token(s) for s in specials}
        out = []
        for i in range(tokenizer.n_vocab):
            if i in special_ids:
                out.append(0)
                continue
            try:
                out.append(len(tokenizer.decode_single_token_bytes(i)))
            except KeyError:  # a hole in the id range
                out.append(0)
        return torch.tensor(out, dtype=torch.long)
    raise TypeError(f"token_bytes needs a BPETokenizer or tiktoken.Encoding, got "
                    f"{type(tokenizer).__name__}")


def bits_per_byte(nats: torch.Tensor, targets: torch.Tensor, token_bytes: torch.Tensor) -> float:
    """``nats.sum() / (ln 2 * token_bytes[targets].sum())``.

    ``nats`` are per-token losses (``cross_entropy(..., reduction="none")``)
    of any shape and ``targets`` the ids they score, same shape. Special
    tokens cover 0 bytes (their loss still counts in the numerator, as the
    formula says). Positions with a negative target (an ``ignore_index``)
    are dropped from both sums.
    """
    if nats.shape != targets.shape:
        raise ValueError(f"nats {tuple(nats.shape)} and targets {tuple(targets.shape)} must have "
                         "the same shape")
    nats = nats.detach().reshape(-1).double()
    targets = targets.reshape(-1)
    keep = targets >= 0
    nats, targets = nats[keep], targets[keep]
    nbytes = token_bytes.to(targets.device)[targets].sum().item()
    if nbytes <= 0:
        raise ValueError("the targets cover 0 bytes (only special tokens?): bits per byte is "
                         "undefined")
    return float(nats.sum().item() / (math.log(2) * nbytes))
