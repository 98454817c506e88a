"""``VectorIndex``: nearest neighbours by cosine similarity over unit vectors, on FAISS.

Every row added is a unit vector (an encoder's L2-normalised embedding), so the
inner product *is* the cosine similarity and each kind below is an
inner-product (``METRIC_INNER_PRODUCT``) index:

- ``"flat"`` (``IndexFlatIP``): exact. A query is compared with every row, N x D
  multiply-adds: at 10,000 rows of 384 numbers that is 4 million, well under a
  millisecond. Exact is the reference the other two are measured against.
- ``"ivf"`` (``IndexIVFFlat``): k-means cuts the space into ``nlist`` cells
  (trained on the first vectors added; default ``nlist = sqrt(N)``, and at
  most N / 39 so every centroid has the 39 points FAISS asks for). A query
  scans only the ``nprobe`` cells whose centroids are nearest; a true
  neighbour in another cell is missed. That is why it is approximate.
- ``"hnsw"`` (``IndexHNSWFlat``): a layered graph where each row links to
  ``hnsw_m`` near neighbours; a query walks greedily from the top layer
  down, keeping a beam of ``ef_search`` candidates. A walk that never
  reaches a region of the graph misses the neighbours there: approximate,
  but no training and log-time search.
- ``"auto"``: flat while the index holds fewer than ``auto_threshold``
  (10,000) rows, then HNSW (rebuilt once from the flat rows when the
  threshold is crossed). Below the threshold exact search is already fast;
  above it HNSW keeps queries fast as the store grows without IVF's
  training step, whose centroids would go stale as documents arrive.

``search`` returns at most ``len(index)`` neighbours per query (never FAISS's
-1 padding: a query whose probed IVF cells or HNSW walk found fewer than k
rows gets its list from exact search instead). ``to_bytes`` / ``from_bytes`` go through ``faiss.serialize_index``;
the caller writes the bytes (``DocumentStore.save`` does so atomically).

Left out: GPU indexes, product quantisation (IVFPQ) and deleting rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import faiss
import numpy as np

KINDS = ("auto", "flat", "ivf", "hnsw")
NORM_TOLERANCE = 1e-3  # how far from 1 a row's L2 norm may be (0 is allowed: an empty text)


@dataclass
class IndexConfig:
    kind: str = "auto"
    auto_threshold: int = 10_000  # "auto": flat below this many rows, HNSW from there
    hnsw_m: int = 32  # graph links per row
    ef_search: int = 64  # HNSW beam width at query time (FAISS's default 16 loses recall)
    nlist: int | None = None  # IVF cells; None: sqrt(N) capped at N / 39
    nprobe: int = 8  # IVF cells scanned per query

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; valid: {', '.join(KINDS)}")
        for name in ("auto_threshold", "hnsw_m", "ef_search", "nprobe"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.nlist is not None and (not isinstance(self.nlist, int) or self.nlist < 1):
            raise ValueError(f"nlist must be None or a positive int, got {self.nlist!r}")


def check_unit_rows(x, dim: int, what: str = "vectors") -> np.ndarray:
    """``x`` as a C-contiguous (N, dim) float32 array of unit (or zero) rows; ValueError if not."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape (N, {dim}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    norms = np.linalg.norm(x, axis=1)
    bad = ~((np.abs(norms - 1) <= NORM_TOLERANCE) | (norms == 0))
    if bad.any():
        raise ValueError(f"{what} must be L2-normalised rows (cosine = inner product); row "
                         f"{int(np.argmax(bad))} has norm {norms[bad][0]:.4f}: divide each row "
                         "by its norm first")
    return x


# ---------------------------------------------------------------- the index


class VectorIndex:
    """Cosine nearest neighbours over unit vectors; see the module docstring for the kinds."""

    def __init__(self, dim: int, kind: str = "auto", auto_threshold: int = 10_000,
                 hnsw_m: int = 32, nlist: int | None = None, nprobe: int = 8,
                 ef_search: int = 64):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.config = IndexConfig(kind, auto_threshold, hnsw_m, ef_search, nlist, nprobe)
        self._index: faiss.Index | None = None  # built on the first add (IVF trains on it)

    # -- building
    @property
    def active_kind(self) -> str:
        """The kind in use now: "flat", "ivf" or "hnsw" ("auto" resolves to one of them)."""
        if self._index is None:
            return "flat" if self.config.kind == "auto" else self.config.kind
        if isinstance(self._index, faiss.IndexHNSW):
            return "hnsw"
        return "ivf" if isinstance(self._index, faiss.IndexIVF) else "flat"

    def _hnsw(self) -> faiss.Index:
        index = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = self.config.ef_search
        return index

    def _new_index(self, x: np.ndarray) -> faiss.Index:
        kind = self.config.kind
        if kind == "auto":
            kind = "hnsw" if len(x) >= self.config.auto_threshold else "flat"
        if kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if kind == "hnsw":
            return self._hnsw()
        n = len(x)  # IVF: k-means on the first batch
        nlist = self.config.nlist or max(1, min(round(n ** 0.5), n // 39))
        if n < nlist:
            raise ValueError(f"an IVF index with nlist={nlist} needs at least {nlist} vectors in "
                             f"its first add (to train its centroids), got {n}; add more at once, "
                             "lower nlist, or use kind='flat' / 'hnsw'")
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = min(self.config.nprobe, nlist)
        return index

    def add(self, vectors) -> VectorIndex:
        """Append unit rows (N, dim); their ids continue from ``len(self)``."""
        x = check_unit_rows(vectors, self.dim)
        if len(x) == 0:
            return self
        if self._index is None:
            self._index = self._new_index(x)
        elif (self.config.kind == "auto" and self.active_kind == "flat"
              and len(self) + len(x) >= self.config.auto_threshold):
            old = self._index.reconstruct_n(0, self._index.ntotal)  # (N, dim): the exact rows
            self._index = self._hnsw()
            self._index.add(old)
        self._index.add(x)
        return self

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    # -- searching
    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (Q, k'), ids (Q, k')) best first, k' = min(k, len(self)); scores are cosines."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        q = check_unit_rows(queries, self.dim, "queries")
        k = min(k, len(self))
        if k == 0 or len(q) == 0:
            return np.zeros((len(q), k), np.float32), np.zeros((len(q), k), np.int64)
        scores, ids = self._index.search(q, k)  # (Q, k), (Q, k)
        if (ids < 0).any():  # an approximate index can come back short: fill from exact search
            exact = faiss.IndexFlatIP(self.dim)
            exact.add(self._index.reconstruct_n(0, len(self)) if self.active_kind != "ivf"
                      else self._ivf_rows())
            bad = (ids < 0).any(axis=1)
            scores[bad], ids[bad] = exact.search(q[bad], k)
        return scores, ids.astype(np.int64)

    def _ivf_rows(self) -> np.ndarray:
        self._index.make_direct_map()
        return self._index.reconstruct_n(0, len(self))

    # -- bytes
    def to_bytes(self) -> bytes:
        """The FAISS index serialised (empty bytes while nothing was added)."""
        if self._index is None:
            return b""
        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, dim: int, **config) -> VectorIndex:
        """Rebuild from ``to_bytes`` output and the same ``IndexConfig`` fields."""
        out = cls(dim, **config)
        if data:
            index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            if index.d != dim:
                raise ValueError(f"the serialised index has dim {index.d}, expected {dim}")
            if isinstance(index, faiss.IndexHNSW):
                index.hnsw.efSearch = out.config.ef_search
            elif isinstance(index, faiss.IndexIVF):
                index.nprobe = min(out.config.nprobe, index.nlist)
            out._index = index
        return out

    def config_dict(self) -> dict:
        return asdict(self.config)
