"""Worked solution: reciprocal rank fusion (see ../retrieval.py for the exercise)."""

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
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, (int, float)) or rrf_k < 0:
        raise ValueError(f"rrf_k must be a number >= 0, got {rrf_k!r}")
    fused: dict[int, float] = {}
    for ranking in rankings:
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"a ranking lists an id twice: {ranking}")
        for rank, i in enumerate(ranking, 1):
            fused[int(i)] = fused.get(int(i), 0.0) + 1.0 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
