"""Week 02 exercises, training: the BPE merge loop (core exercise ``learn_merges``).

Fill in ``learn_merges`` below, then run ``make week02-exercises``. It replaces
``week02_bpe.learn_merges`` (which ``BPETokenizer.train`` calls after splitting the texts
into chunks with ``count_chunks``) while its tests run; they check your merges by hand on
small strings and against the Rust trainer ``rustbpe`` (the one nanochat uses) on Python
docs, multilingual text and two other split patterns. Everything else is the package's.

The input is already pre-tokenised: ``chunk_counts`` maps each unique chunk (a piece of
text the GPT-4 regex cut out, like ``" hello"`` or ``"123"``) to how often it occurs.
Merges never cross chunk boundaries, so each unique chunk is handled once, weighted by
its count.
"""


def learn_merges(chunk_counts: dict[str, int], num_merges: int, progress: bool = False,
                 history: list | None = None) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` merges; return them in order, merge i making token 256 + i.

    Start: every chunk is the list of its UTF-8 bytes (ids 0..255), e.g. ``"hé"`` ->
    ``[104, 195, 169]``. Chunks of fewer than 2 bytes hold no pair; skip them. Then, per step:

    1. Count every adjacent pair over all chunks, each occurrence weighted by the chunk's
       count. Overlapping occurrences count: ``"aaa"`` holds ``(97, 97)`` twice.
    2. Pick the pair with the highest count. Ties go to the smallest pair, compared as a
       tuple ``(left_id, right_id)``: ``min(counts, key=lambda p: (-counts[p], p))``.
       (This rule is what makes your merges equal rustbpe's, not just "a" BPE.)
    3. Give it the id ``256 + len(merges)``, append the pair to ``merges``, and rewrite
       every chunk: scan left to right, replacing each non-overlapping occurrence of the
       pair by the new id (``[97, 97, 97]`` -> ``[256, 97]``).
    4. Stop after ``num_merges`` merges, or earlier when no pair is left (``"ab"`` allows
       one merge, however many are asked for).

    Worked example, one chunk ``"aaabdaaabac"``: merges ``(97, 97)``, then ``(97, 98)``
    (it ties with ``(256, 97)`` at 2 and is smaller), then ``(256, 257)``, ``(97, 99)``,
    ``(100, 258)``. The tests' docstrings derive more cases.

    Speed: re-counting everything each step is correct but slow (about 10 s a test here).
    Faster: keep the pair counts and, for each pair, the set of chunks that contain it; a
    merge then touches only those chunks: subtract their old pairs, rewrite, add the new.

    ``progress`` and ``history`` are for the package's progress bar and benchmark; ignore
    them.
    """
    raise NotImplementedError("not implemented yet: learn_merges (count weighted pairs, merge "
                              "the most frequent, ties to the smallest pair; see its docstring)")
