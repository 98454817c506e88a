"""Batching token sequences: padding with loss masks, best-fit packing, a resumable sampler.

One convention throughout. A *sequence* is a list of token ids; its *mask*
(same length) is 1 on every token the model is trained to predict and 0
elsewhere (a prompt, the user's turn, a tool's output). A batch is ``(x, y)``,
both int64 of shape (B, T): ``x[b, t]`` is token t of row b and ``y[b, t]`` the
token after it where that token is trained, else ``IGNORE_INDEX`` (-1, the
project's one mask value, which ``F.cross_entropy(..., ignore_index=-1)`` and
week03's Trainer skip). A mask of ``None`` means plain language modelling:
every token but the first is trained.

- ``pad_batch``: sequences of different lengths in one (x, y); right padding
  by default, left padding on request;
- ``best_fit``, ``pack_batch`` and ``pack_documents``: several short sequences per
  row of a fixed length, placed by best-fit decreasing (``pack_documents``: with
  each position's document label, for a block-diagonal attention mask);
- ``SampledBatches``: random batches of a list of examples through a collate
  function, with ``state_dict``/``load_state_dict``, so week03's Trainer can
  run (and resume exactly) a fine-tuning loop over examples.

Packed rows and attention: ``pack_batch`` concatenates sequences, and a
model that attends causally over the whole row lets a later sequence *see*
the ones before it (the usual trade for pretraining text, documents
separated by a BOS token, as GPT-2 trained). ``pack_documents`` also returns
each position's document label, (R, T) ``segments``, which week01's models
take as ``forward(idx, segments=...)``: a block-diagonal mask and positions
counted per document, so every packed conversation gets exactly the logits it
would get alone (week09's SFT packs chat data this way). Also left out:
bucketing by length and streaming from disk (week02's ``TokenLoader`` streams
pretraining shards).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence

import torch

from shared.protocols import IGNORE_INDEX

__all__ = ["pad_batch", "best_fit", "pack_batch", "pack_documents", "SampledBatches",
           "IGNORE_INDEX"]

SIDES = ("right", "left")

# ----------------------------------------------------------------------------- padding


def _rows(seqs, masks) -> list[tuple[list[int], list[int]]]:
    """(ids, mask) pairs as lists, checked; a None mask trains every token but the first."""
    if len(seqs) == 0:
        raise ValueError("no sequences to batch")
    if masks is not None and len(masks) != len(seqs):
        raise ValueError(f"{len(seqs)} sequences but {len(masks)} masks")
    rows = []
    for i, ids in enumerate(seqs):
        ids = [int(t) for t in ids]
        if len(ids) < 2:
            raise ValueError(f"sequence {i} has {len(ids)} token(s); a training row needs at "
                             "least 2 (an input and the target after it)")
        if masks is None:
            mask = [0] + [1] * (len(ids) - 1)
        else:
            mask = [int(bool(m)) for m in masks[i]]
            if len(mask) != len(ids):
                raise ValueError(f"sequence {i} has {len(ids)} tokens but its mask {len(mask)}")
        rows.append((ids, mask))
    return rows


def pad_batch(seqs: Sequence[Sequence[int]], masks: Sequence[Sequence[int]] | None = None, *,
              pad_id: int = 0, side: str = "right", max_len: int | None = None,
              pad_to: int | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) int64 (B, T) from token sequences and their loss masks.

    Row b is sequence b shifted by one: ``x = ids[:-1]`` and ``y[t] = ids[t + 1]``
    where ``mask[t + 1]`` is set, else ``IGNORE_INDEX``. ``T`` is the longest
    sequence minus one, or ``pad_to`` when given. Shorter rows get ``pad_id``
    in x and ``IGNORE_INDEX`` in y after their tokens (``side="right"``) or
    before them (``side="left"``: every row ends at the last column; with
    absolute position embeddings the positions then shift by the padding, so
    left padding suits rows that are compared at their end, not pretraining).
    ``max_len`` first cuts every sequence to its first ``max_len + 1`` tokens,
    so ``T <= max_len``.

    Example: ``[5, 6, 7, 8]`` with mask ``[0, 0, 1, 1]`` and ``[1, 2]`` with
    mask ``[0, 1]`` give ``x = [[5, 6, 7], [1, 0, 0]]``,
    ``y = [[-1, 7, 8], [2, -1, -1]]`` (right) or ``x = [[5, 6, 7], [0, 0, 1]]``,
    ``y = [[-1, 7, 8], [-1, -1, 2]]`` (left).
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    rows = _rows(seqs, masks)
    if max_len is not None:
        rows = [(ids[:max_len + 1], m[:max_len + 1]) for ids, m in rows]
    longest = max(len(ids) for ids, _ in rows) - 1
    T = longest if pad_to is None else pad_to
    if T < longest:
        raise ValueError(f"pad_to={pad_to} is shorter than the longest row ({longest} "
                         "positions); raise it or pass max_len to cut the sequences")
    xs, ys = [], []  # built as lists, made tensors once: a batch of short rows stays cheap
    for ids, mask in rows:
        n = len(ids) - 1
        x_row = list(ids[:-1])
        y_row = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
        fill_x, fill_y = [pad_id] * (T - n), [IGNORE_INDEX] * (T - n)
        xs.append(x_row + fill_x if side == "right" else fill_x + x_row)
        ys.append(y_row + fill_y if side == "right" else fill_y + y_row)
    x = torch.tensor(xs, dtype=torch.long, device=device).view(len(rows), T)  # (B, T)
    y = torch.tensor(ys, dtype=torch.long, device=device).view(len(rows), T)  # (B, T)
    return x, y


# ----------------------------------------------------------------------------- packing


def best_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of item indices, each bin's lengths summing to at most ``capacity``.

    Best-fit decreasing: take the items longest first (ties in index order)
    and put each into the open bin with the *least* room left that still
    holds it, opening a new bin when none does (ties: the older bin). Like
    first-fit decreasing it uses at most 11/9 of the optimal number of bins
    plus a constant (Johnson, 1973). Every item lands in exactly one bin;
    bins list their items in placement order.

    Example, capacity 10, lengths ``[1, 8, 3, 6]``: 8 opens bin 0 (room 2), 6
    opens bin 1 (room 4), 3 fits only bin 1 (room 1 left), and 1 fits both: best
    fit puts it in bin 1, the fuller one, and returns ``[[1], [3, 2, 0]]``,
    keeping bin 0's room of 2 for a later item (first fit would give
    ``[[1, 0], [3, 2]]``).
    """
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    too_long = [(i, n) for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        i, n = too_long[0]
        raise ValueError(f"item {i} has length {n} > capacity {capacity}: cut or split it first")
    if any(n < 0 for n in lengths):
        raise ValueError("lengths must be >= 0")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    open_bins: list[tuple[int, int]] = []                 # (room left, bin index), sorted
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(open_bins, (n, -1))        # the smallest room >= n
        if k == len(open_bins):
            bins.append([i])
            room, b = capacity - n, len(bins) - 1
        else:
            room, b = open_bins.pop(k)
            bins[b].append(i)
            room -= n
        bisect.insort(open_bins, (room, b))
    return bins


def pack_batch(seqs: Sequence[Sequence[int]], block_size: int,
               masks: Sequence[Sequence[int]] | None = None, *, pad_id: int = 0,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of shape (R, block_size): the sequences best-fit packed into R rows.

    A row holds up to ``block_size + 1`` tokens (``block_size`` input/target
    pairs): ``best_fit`` over the lengths with that capacity, the sequences of
    a row concatenated in placement order, their masks likewise, then
    ``pad_batch(..., pad_to=block_size)``. The pair that crosses from one
    sequence into the next is trained only if the next sequence's mask marks
    its first token (the default mask does not). The model still attends
    across the sequences of a row: see the module docstring (``pack_documents``).
    """
    x, y, _ = pack_documents(seqs, block_size, masks, pad_id=pad_id, device=device,
                             cross_targets=True)
    return x, y


def pack_documents(seqs: Sequence[Sequence[int]], block_size: int,
                   masks: Sequence[Sequence[int]] | None = None, *, pad_id: int = 0,
                   device=None, cross_targets: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, segments), each (R, block_size): ``pack_batch``'s rows plus document labels.

    ``segments[r, t]`` is the index (0, 1, ... in placement order) of the sequence that
    input position t of row r belongs to, and -1 on padding; a model given
    ``segments=`` attends within a document only. The pair that crosses from one
    sequence into the next is never trained (its target lies in another document)
    unless ``cross_targets`` (what ``pack_batch`` does for plain causal rows).

    Example, block_size 6, sequences of lengths 4 and 3 (one bin of 7 tokens):
    ``segments == [[0, 0, 0, 0, 1, 1]]``; y[0, 3] (token 0 of sequence 1) is -1.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    rows = _rows(seqs, masks)
    bins = best_fit([len(ids) for ids, _ in rows], block_size + 1)
    ids = [[t for i in b for t in rows[i][0]] for b in bins]
    mask = [[m for i in b for m in rows[i][1]] for b in bins]
    labels = [[k for k, i in enumerate(b) for _ in rows[i][0]] for b in bins]
    if not cross_targets:  # a document's first token is never the target of the one before
        for lab, m in zip(labels, mask):
            for t in range(1, len(lab)):
                if lab[t] != lab[t - 1]:
                    m[t] = 0
    x, y = pad_batch(ids, mask, pad_id=pad_id, pad_to=block_size, device=device)
    seg = torch.full((len(bins), block_size), -1, dtype=torch.long)
    for r, lab in enumerate(labels):
        n = len(lab) - 1  # x holds a row's tokens but its last
        seg[r, :n] = torch.tensor(lab[:n], dtype=torch.long)
    return x, y, seg.to(device) if device is not None else seg


# ----------------------------------------------------------------------------- sampling


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


class SampledBatches:
    """Random batches of ``examples``, collated, resumable: the loader for fine-tuning runs.

    ``next_batch()`` draws ``batch_size`` examples from a ``random.Random``
    and returns ``collate(drawn)``. Draws are uniform with replacement
    (``replace=True``) or distinct (``replace=False``, ``min(batch_size, n)``
    examples, ``random.sample``). The generator is ``rng`` when given (shared
    with the caller, which may draw from it between batches) or a fresh one
    seeded with ``seed``. ``state_dict()`` / ``load_state_dict()`` save and
    restore the generator and the batch count, so week03's Trainer resumes a
    run with the same batches. A subclass draws differently by overriding
    ``sample()`` (week07 mixes replayed examples in there).
    """

    def __init__(self, examples: Sequence, batch_size: int, collate: Callable, seed: int = 0, *,
                 replace: bool = True, rng: random.Random | None = None):
        if len(examples) == 0:
            raise ValueError("SampledBatches needs at least one example")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not callable(collate):
            raise TypeError(f"collate must be a function of a list of examples, got {collate!r}")
        self.examples, self.batch_size, self.collate = examples, int(batch_size), collate
        self.replace = bool(replace)
        self.rng = rng if rng is not None else random.Random(seed)
        self.batches = 0

    def sample(self) -> list:
        """The examples of the next batch."""
        if self.replace:
            n = len(self.examples)
            return [self.examples[self.rng.randrange(n)] for _ in range(self.batch_size)]
        return self.rng.sample(list(self.examples), min(self.batch_size, len(self.examples)))

    def next_batch(self):
        self.batches += 1
        return self.collate(self.sample())

    def state_dict(self) -> dict:
        return {"rng": _rng_state(self.rng), "batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((int(version), tuple(int(v) for v in internal), gauss))
        self.batches = int(state["batches"])
