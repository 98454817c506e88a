"""Week 09 exercise, packing without leaks: several conversations per row, each on its own.

SFT rows are short conversations. Padding each to the block size wastes most of a batch;
packing concatenates several into one row. Two things then go wrong unless you prevent
them: a conversation attends to the ones before it in its row (week01's models fix that
when you give them each position's document label: ``model(x, segments=labels)``, a
block-diagonal mask and positions counted per document), and the target of a
conversation's last token would be the next conversation's first token, a prediction
across documents that must not be trained.

Fill in ``pack_documents``, then run ``make week09-exercises`` (``IMPL=solutions`` runs the
worked one). It replaces ``shared.pack_documents`` inside ``week09_alignment.sft`` while
its tests run: a worked example, and a packed batch whose loss equals the loss of the same
conversations padded one per row.
"""

from __future__ import annotations

import torch  # noqa: F401  (the tensors you build)

from shared import best_fit, pad_batch  # noqa: F401  (what you build on)


def pack_documents(seqs, block_size: int, masks=None, *, pad_id: int = 0, device=None,
                   cross_targets: bool = False):
    """(x, y, segments), each int64 (R, block_size): the sequences best-fit packed into R rows.

    ``seqs``: token-id lists; ``masks``: per sequence, 1 where the token is trained (None:
    every token but the first of each sequence).

    1. Bins: ``best_fit(lengths, block_size + 1)`` (a row holds block_size + 1 tokens: x is
       the first block_size, y the last block_size); each bin lists sequence indices in
       placement order.
    2. For each bin, concatenate its sequences' ids, their masks, and a label per token:
       k for every token of the bin's k-th sequence (0, 1, ...).
    3. Unless ``cross_targets``, set the mask to 0 at every token whose label differs from
       the token before it (a document's first token is no target of the one before).
    4. ``x, y = pad_batch(ids, masks, pad_id=pad_id, pad_to=block_size, device=device)``.
    5. ``segments``: (R, block_size) filled with -1 (padding); row r's first
       ``len(ids_r) - 1`` positions get the labels of the tokens x holds there.

    Example (block_size 6): sequences of lengths 4 and 3 share one row of 7 tokens;
    segments == [[0, 0, 0, 0, 1, 1]], and y[0, 3] (the target of sequence 0's last token,
    sequence 1's first) is -1.
    """
    raise NotImplementedError("not implemented yet: pack_documents (best-fit bins, labels, "
                              "no crossing targets, pad_batch, the segments tensor)")
