"""Week 10 exercise, retrieval: reciprocal rank fusion (Cormack et al., SIGIR 2009).

Hybrid search asks two retrievers (dense cosine over sentence embeddings, and BM25 over
words) and fuses their rankings. Their scores live on different scales (a cosine in
[-1, 1], a BM25 sum of idf-weighted terms), so RRF ignores the scores and uses only ranks:
a document ranked r-th by one retriever earns 1 / (rrf_k + r) from it, and the fused score
is the sum over retrievers. rrf_k = 60 (the paper's value) flattens the top of each list,
so one retriever's first place cannot outvote the other's agreement.

Fill in ``rrf_fuse``, then run ``make week10-exercises`` (``IMPL=solutions`` runs the worked
one). It replaces ``week10_hydra.retrieval.rrf_fuse`` while the retrieval tests run: the
hand-derived fusion, the store's hybrid search on a fixed encoder, and recall on the fact
world.
"""

from __future__ import annotations


def rrf_fuse(rankings: list[list[int]], rrf_k: int = 60) -> list[tuple[int, float]]:
    """Fuse rankings (each a list of ids, best first, each id at most once) into
    ``[(id, score), ...]`` best first, where score = sum over the rankings that list the id
    of 1 / (rrf_k + rank), ranks counted from 1. Ties go to the lower id.

    ValueErrors: ``rrf_k`` not a number >= 0, or a ranking that lists an id twice.

    Worked example: rankings [3, 1, 2] and [2, 3, 4], rrf_k = 60:
    id 3: 1/61 + 1/62 = 0.032522; id 2: 1/63 + 1/61 = 0.032266; id 1: 1/62 = 0.016129;
    id 4: 1/63 = 0.015873, so the order is [3, 2, 1, 4].
    """
    raise NotImplementedError("not implemented yet: rrf_fuse (sum of 1 / (rrf_k + rank) per id)")
