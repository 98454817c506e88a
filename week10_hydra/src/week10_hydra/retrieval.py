"""Retrieval: documents cut into chunks, found by meaning (dense), by words (BM25) or both.

Ingestion. ``chunk_text`` cuts a text into windows of ``chunk_words`` words,
each starting ``chunk_words - overlap_words`` words after the last, so a fact
that straddles a cut is whole in at least one chunk when it is shorter than
the overlap. Chunk ``k`` of document ``zorvania`` has source ``zorvania#k``.

Search. A ``DocumentStore`` holds the chunks, their embeddings in a
``VectorIndex`` (cosine similarity, see index.py) and week04's BM25
``Search`` over the same chunks, one passage per chunk in the same order,
so passage ``i`` is chunk ``i``. Three modes:

- ``"dense"``: the encoder's cosine similarity (the score of a ``Hit``);
- ``"bm25"``: week04's BM25 score, ties to the earlier chunk (as week04);
- ``"hybrid"``: reciprocal rank fusion (Cormack et al., 2009) of the two
  rankings' top ``fetch_k`` (default ``max(4k, 20)``)::

      score(d) = sum over rankings r containing d of 1 / (rrf_k + rank_r(d))

  with ranks from 1 and ``rrf_k = 60``; ties go to the lower chunk id. RRF
  uses ranks only, so a cosine and an (unbounded) BM25 score need no common
  scale. A made-up name ("Zorvania") is one rare word to BM25 and a few
  unrelated sub-words to a sentence encoder, a paraphrase the opposite. Fusion
  pays when one ranking is noise: asked "Which country was founded in 974?",
  MiniLM ranks near chance, and hybrid recall@1 falls to 0.24 where BM25 has 1.0.

Saving (``save`` / ``load``), as week07's ``AdapterStore``: a folder holds
``manifest.json`` and one generation of files, ``index-<stamp>.faiss``
(``faiss.serialize_index``) and ``chunks-<stamp>.json``. A save writes the new
generation under fresh names (temp file, fsync, ``os.replace``, fsync of the
folder), then replaces the manifest the same way: the commit point. A save
killed at any instant leaves the old manifest naming the old, complete files
(or the new one naming the new); then unnamed files are deleted. ``load``
checks every SHA-256 and the encoder's name and dim (``shared.CheckpointError``
otherwise). BM25 is rebuilt from the chunks.

Left out: deleting or updating documents, metadata filters, re-ranking and
concurrent writers (one process owns a store folder at a time).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from shared import CheckpointError, Document
from week04_modern_arch_tools.tools.search import Search, tokenize
from week10_hydra.encoders import Encoder
from week10_hydra.index import VectorIndex

MODES = ("hybrid", "dense", "bm25")
MANIFEST = "manifest.json"
FORMAT = "week10-document-store"
VERSION = 1

# ---------------------------------------------------------------- ingestion


def _check_window(chunk_words: int, overlap_words: int) -> None:
    for name, v in (("chunk_words", chunk_words), ("overlap_words", overlap_words)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be an int, got {v!r}")
    if chunk_words < 1 or not 0 <= overlap_words < chunk_words:
        raise ValueError(f"need chunk_words >= 1 and 0 <= overlap_words < chunk_words, got "
                         f"chunk_words={chunk_words}, overlap_words={overlap_words}")


def chunk_text(text: str, chunk_words: int = 80, overlap_words: int = 20) -> list[str]:
    """Windows of ``chunk_words`` words overlapping by ``overlap_words``; [] for a text
    without words (a chunk is never empty). Whitespace inside a chunk becomes one space."""
    _check_window(chunk_words, overlap_words)
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    words = text.split()
    out, start, stride = [], 0, chunk_words - overlap_words
    while start < len(words):
        out.append(" ".join(words[start:start + chunk_words]))
        if start + chunk_words >= len(words):
            break
        start += stride
    return out


@dataclass(frozen=True)
class Chunk:
    id: int  # position in the store, = its row in the vector index and its BM25 passage
    source: str  # "<doc>#<k>": chunk k of document doc
    doc: str
    text: str


def _as_pairs(documents, first: int = 0) -> list[tuple[str, str]]:
    """Documents as (name, text): a shared.Document, a (name, text) pair, or a string
    (named ``doc<first + i>``)."""
    if isinstance(documents, (str, Document)):
        raise TypeError("documents must be a list of documents, not a single one")
    pairs = []
    for i, doc in enumerate(documents):
        if isinstance(doc, Document):
            pairs.append((doc.name, doc.text))
        elif isinstance(doc, str):
            pairs.append((f"doc{first + i}", doc))
        elif isinstance(doc, (tuple, list)) and len(doc) == 2 and all(
                isinstance(x, str) for x in doc):
            pairs.append((doc[0], doc[1]))
        else:
            raise TypeError(f"document {i} must be a shared.Document, a (source, text) pair of "
                            f"strings or a string, got {doc!r:.80}")
    names = [n for n, _ in pairs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"document names must be unique (they name the chunks); repeated: {dup}")
    return pairs


def ingest(documents, chunk_words: int = 80, overlap_words: int = 20,
           start_id: int = 0) -> list[Chunk]:
    """Every document's chunks, ids counting from ``start_id``; documents without words give
    none."""
    _check_window(chunk_words, overlap_words)
    chunks: list[Chunk] = []
    for name, text in _as_pairs(documents):
        for k, piece in enumerate(chunk_text(text, chunk_words, overlap_words)):
            chunks.append(Chunk(start_id + len(chunks), f"{name}#{k}", name, piece))
    return chunks


# ---------------------------------------------------------------- fusion


@dataclass(frozen=True)
class Hit:
    score: float  # cosine (dense), BM25 (bm25) or RRF (hybrid)
    source: str
    text: str
    chunk_id: int


def rrf_fuse(rankings: list[list[int]], rrf_k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: (id, sum of 1 / (rrf_k + rank)) best first, ranks from 1,
    ties to the lower id. Each ranking lists ids best first, each id at most once."""
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, (int, float)) or rrf_k < 0:
        raise ValueError(f"rrf_k must be a number >= 0, got {rrf_k!r}")
    fused: dict[int, float] = {}
    for ranking in rankings:
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"a ranking lists an id twice: {ranking}")
        for rank, i in enumerate(ranking, 1):
            fused[int(i)] = fused.get(int(i), 0.0) + 1.0 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


# ---------------------------------------------------------------- file helpers


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_manifest(folder: str | os.PathLike) -> dict:
    """The committed manifest of a store folder; CheckpointError if missing or not one."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise CheckpointError(f"no document store at {folder}: {MANIFEST} is missing")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e}); it is only ever replaced atomically, "
                              "so something other than DocumentStore wrote it") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("version") != VERSION:
        raise CheckpointError(f"{path} is not a {FORMAT} v{VERSION} manifest")
    return m


# ---------------------------------------------------------------- the store


class DocumentStore:
    """Chunks + a cosine ``VectorIndex`` + week04 BM25 over the same chunks."""

    def __init__(self, encoder: Encoder, chunk_words: int = 80, overlap_words: int = 20,
                 kind: str = "auto", progress: bool = True, **index_options):
        """``kind`` and ``index_options`` (auto_threshold, hnsw_m, ef_search, nlist, nprobe)
        configure the ``VectorIndex``."""
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder needs name, dim and encode(texts); got "
                            f"{type(encoder).__name__}")
        _check_window(chunk_words, overlap_words)
        self.encoder, self.chunk_words, self.overlap_words = encoder, chunk_words, overlap_words
        self.progress = progress
        self.index = VectorIndex(encoder.dim, kind=kind, **index_options)
        self.chunks: list[Chunk] = []
        self.doc_names: set[str] = set()
        self._bm25 = Search(documents=[], passage_words=chunk_words)

    def __len__(self) -> int:
        return len(self.chunks)

    # -- adding
    def _embed(self, texts: list[str], batch: int = 256) -> np.ndarray:
        out = [np.zeros((0, self.encoder.dim), np.float32)]
        for s in tqdm(range(0, len(texts), batch), desc=f"embed ({self.encoder.name})",
                      disable=not self.progress, unit="batch"):
            out.append(np.asarray(self.encoder.encode(texts[s:s + batch]), np.float32))
        return np.concatenate(out)  # (N, D)

    def _append(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        self.index.add(vectors)
        self._bm25.add_documents([(c.source, c.text) for c in chunks])
        self.chunks.extend(chunks)
        self.doc_names.update(c.doc for c in chunks)
        if not len(self._bm25.passages) == len(self.index) == len(self.chunks):
            raise RuntimeError("chunks, vectors and BM25 passages are out of step")

    def add_documents(self, documents) -> list[Chunk]:
        """Chunk, embed (tqdm progress) and index ``documents``; returns the new chunks."""
        pairs = _as_pairs(documents, first=len(self.doc_names))
        taken = sorted(self.doc_names & {name for name, _ in pairs})
        if taken:
            raise ValueError(f"documents already in the store (names must be unique): {taken}")
        chunks = ingest(pairs, self.chunk_words, self.overlap_words, start_id=len(self.chunks))
        self._append(chunks, self._embed([c.text for c in chunks]))
        return chunks

    # -- searching
    def bm25_ranking(self, query: str, depth: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) best first, as week04 ``Search.search`` orders them."""
        scores = self._bm25.scores(query)
        return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]

    def search_batch(self, queries: list[str], k: int = 3, mode: str = "hybrid",
                     rrf_k: int = 60, fetch_k: int | None = None) -> list[list[Hit]]:
        """``search`` for several queries (the dense ones embedded in one batch)."""
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; valid: {', '.join(MODES)}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if isinstance(queries, str) or not all(isinstance(q, str) and q.strip() for q in queries):
            raise ValueError("queries must be a list of non-empty strings")
        depth = k if mode != "hybrid" else (fetch_k or max(4 * k, 20))
        if not self.chunks or not queries:
            return [[] for _ in queries]
        dense = bm25 = None
        if mode != "bm25":
            scores, ids = self.index.search(self.encoder.encode(list(queries)), depth)  # (Q, d)
            dense = [list(zip(i.tolist(), s.tolist())) for s, i in zip(scores, ids)]
        if mode != "dense":
            bm25 = [self.bm25_ranking(q, depth) for q in queries]
        out = []
        for qi in range(len(queries)):
            if mode == "hybrid":
                ranked = rrf_fuse([[i for i, _ in dense[qi]], [i for i, _ in bm25[qi]]], rrf_k)
            else:
                ranked = (dense or bm25)[qi]
            out.append([Hit(float(s), self.chunks[i].source, self.chunks[i].text, i)
                        for i, s in ranked[:k]])
        return out

    def search(self, query: str, k: int = 3, mode: str = "hybrid", rrf_k: int = 60,
               fetch_k: int | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query``, best first (see the module docstring)."""
        if not isinstance(query, str):
            raise ValueError(f"query must be a string, got {type(query).__name__}")
        return self.search_batch([query], k, mode, rrf_k, fetch_k)[0]

    def as_tool(self, k: int = 3, mode: str = "hybrid", max_chars: int = 1200) -> StoreTool:
        """A ``shared.Tool`` named "search" answering like week04's ``Search.run``."""
        return StoreTool(self, k, mode, max_chars)

    # -- saving
    def save(self, folder: str | os.PathLike) -> Path:
        """Write a new generation and commit it by replacing the manifest; returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            generation = read_manifest(folder)["generation"] + 1
        except CheckpointError:
            generation = 1
        stamp = f"{generation:06d}-{time.time_ns():x}-{os.getpid()}"
        payloads = {
            "index": (f"index-{stamp}.faiss", self.index.to_bytes()),
            "chunks": (f"chunks-{stamp}.json",
                       json.dumps([asdict(c) for c in self.chunks]).encode("utf-8"))}
        files = {}
        for key, (name, data) in payloads.items():
            _atomic_write(folder / name, data)
            files[key] = {"file": name, "sha256": _sha256(data), "bytes": len(data)}
        manifest = {
            "format": FORMAT, "version": VERSION, "generation": generation,
            "encoder": {"name": self.encoder.name, "dim": self.encoder.dim},
            "counts": {"chunks": len(self.chunks), "vectors": len(self.index),
                       "documents": len(self.doc_names)},
            "config": {"chunk_words": self.chunk_words, "overlap_words": self.overlap_words,
                       "index": self.index.config_dict()},
            "files": files}
        _atomic_write(folder / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
        keep = {f["file"] for f in files.values()}
        for pattern in ("index-*.faiss", "chunks-*.json", ".*.tmp-*"):  # the old generation
            for p in folder.glob(pattern):
                if p.name not in keep:
                    p.unlink(missing_ok=True)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, encoder: Encoder,
             progress: bool = True) -> DocumentStore:
        """The committed generation of a saved store, verified; ``encoder`` must be the one it
        was built with (same name and dim)."""
        folder = Path(folder)
        m = read_manifest(folder)
        want = m["encoder"]
        if (getattr(encoder, "name", None), getattr(encoder, "dim", None)) != (
                want["name"], want["dim"]):
            raise CheckpointError(
                f"the store at {folder} was built with encoder {want['name']!r} (dim "
                f"{want['dim']}), got {getattr(encoder, 'name', None)!r} (dim "
                f"{getattr(encoder, 'dim', None)}); its vectors only mean something to that "
                "encoder: load with it or rebuild the store")
        data = {}
        for key, entry in m["files"].items():
            path = folder / entry["file"]
            if not path.exists():
                raise CheckpointError(f"{path}, named by {folder / MANIFEST}, is missing")
            data[key] = path.read_bytes()
            if _sha256(data[key]) != entry["sha256"]:
                raise CheckpointError(f"{path} does not match its SHA-256 in the manifest "
                                      "(corrupt or changed after the save)")
        cfg = m["config"]
        store = cls(encoder, cfg["chunk_words"], cfg["overlap_words"], progress=progress,
                    **cfg["index"])
        store.index = VectorIndex.from_bytes(data["index"], want["dim"], **cfg["index"])
        chunks = [Chunk(**c) for c in json.loads(data["chunks"])]
        if [c.id for c in chunks] != list(range(len(chunks))) or len(chunks) != len(store.index):
            raise CheckpointError(f"{folder}: {len(chunks)} chunks with ids out of order or not "
                                  f"matching the index's {len(store.index)} vectors")
        store._bm25.add_documents([(c.source, c.text) for c in chunks])
        store.chunks = chunks
        store.doc_names = {c.doc for c in chunks}
        return store


# ---------------------------------------------------------------- the tool and the metric


class StoreTool:
    """``shared.Tool`` "search" over a ``DocumentStore``: "[n] source: text" lines; never
    raises (errors come back as text)."""

    name = "search"

    def __init__(self, store: DocumentStore, k: int = 3, mode: str = "hybrid",
                 max_chars: int = 1200):
        if mode not in MODES or k < 1 or max_chars < 4:
            raise ValueError(f"need mode in {MODES}, k >= 1, max_chars >= 4; got mode={mode!r}, "
                             f"k={k}, max_chars={max_chars}")
        self.store, self.k, self.mode, self.max_chars = store, k, mode, max_chars

    def run(self, text: str) -> str:
        if not isinstance(text, str) or not text.strip():
            return "Error: empty search query"
        if self.mode == "bm25" and not tokenize(text):
            return "Error: the query has no searchable words"
        try:
            hits = self.store.search(text, self.k, self.mode)
        except Exception as e:  # whatever the model wrote, the tool answers in text
            return f"Error: the document store could not be searched ({type(e).__name__}: {e})"
        if not hits:
            return f"No results for {text.strip()!r}."
        out = "\n".join(f"[{i}] {h.source}: {h.text}" for i, h in enumerate(hits, 1))
        return out if len(out) <= self.max_chars else out[: self.max_chars - 3] + "..."


def recall_at_k(store: DocumentStore, queries: list[str], gold_sources: list, k: int = 3,
                mode: str = "hybrid") -> float:
    """The fraction of queries with a gold chunk in their top ``k``; a gold is a chunk source
    ("zorvania#0") or a document name ("zorvania"), one string or a set per query."""
    if len(queries) != len(gold_sources) or not queries:
        raise ValueError(f"need as many gold sources as queries (and at least one), got "
                         f"{len(queries)} queries and {len(gold_sources)} golds")
    golds = [{g} if isinstance(g, str) else set(g) for g in gold_sources]
    found = 0
    for gold, hits in zip(golds, store.search_batch(list(queries), k, mode)):
        found += any(h.source in gold or store.chunks[h.chunk_id].doc in gold for h in hits)
    return found / len(queries)
