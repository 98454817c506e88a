"""Worked solution: the BPE merge loop (week02 exercise ``learn_merges``).

Pair counts kept up to date per merge: only the chunks that contain the merged pair are
rewritten (their old pairs subtracted, their new pairs added). The best pair is a plain
``min`` over the counts each step; the package uses a heap instead, for speed.
"""

from collections import defaultdict


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """``ids`` with each non-overlapping ``pair``, left to right, replaced by ``new_id``."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def learn_merges(chunk_counts: dict[str, int], num_merges: int, progress: bool = False,
                 history: list | None = None) -> list[tuple[int, int]]:
    """Most frequent weighted pair first, ties to the smallest pair; merge i makes 256 + i."""
    kept = [(chunk.encode("utf-8"), c) for chunk, c in chunk_counts.items() if c > 0]
    words = [list(b) for b, _ in kept if len(b) >= 2]  # a single byte holds no pair
    weights = [c for b, c in kept if len(b) >= 2]
    counts: dict[tuple[int, int], int] = defaultdict(int)  # pair -> weighted count
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> chunks that may hold it
    for wi, w in enumerate(words):
        for pair in zip(w, w[1:]):
            counts[pair] += weights[wi]
            where[pair].add(wi)

    merges: list[tuple[int, int]] = []
    while len(merges) < num_merges and counts:
        best = min(counts, key=lambda p: (-counts[p], p))
        new_id = 256 + len(merges)
        merges.append(best)
        for wi in where.pop(best):
            w, c = words[wi], weights[wi]
            for pair in zip(w, w[1:]):  # take the chunk's old pairs out ...
                counts[pair] -= c
                if counts[pair] == 0:
                    del counts[pair]
            w = words[wi] = _merge(w, best, new_id)
            for pair in zip(w, w[1:]):  # ... and its new ones in
                counts[pair] += c
                where[pair].add(wi)
    return merges
