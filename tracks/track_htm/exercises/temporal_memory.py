"""track_htm exercises, temporal memory: which cells fire, which win, which segments learn.

In the package's ``TemporalMemory.compute`` (``tracks/track_htm/src/track_htm/
temporal_memory.py``; read its module docstring) this is step 1, called every step with
the segment activity computed at the previous step. Segments are rows of a dense store;
``seg_cell[s]`` is the cell that owns segment s, and cell ``j`` belongs to column
``j // cells_per_column``.
"""

from __future__ import annotations


def activate_cells(active_cols, active_segs, matching_segs, seg_cell, seg_potential, seg_count,
                   cells_per_column, rng):
    """Returns ``(active_cells, winner_cells, learn_segs, grow_cells, bursting)``.

    Inputs: active_cols bool (C,); active_segs, matching_segs int arrays (sorted segment
    ids); seg_cell (S,) int; seg_potential (S,) int (potential synapses onto the previous
    active cells); seg_count (C * cpc,) int (segments per cell); rng a numpy Generator.

    1. Correct predictions: the active segments whose cell's column is active, in the order
       of ``active_segs``. Their cells are active and winners; their columns are *predicted*.
    2. Bursting: active columns that are not predicted. ``bursting`` bool (C,). Every cell
       of a bursting column is active.
    3. In each bursting column, its best matching segment: the matching segment (on one of
       its cells) with the largest ``seg_potential``, ties to the lowest segment id. Its
       cell is a winner. Order these by column.
    4. Bursting columns with no matching segment ("fresh", increasing column order, F of
       them): draw ``noise = rng.random((F, cpc))`` ONCE, and pick in each fresh column
       the cell with the smallest ``seg_count + 0.5 * noise`` (fewest segments, random
       ties). That cell is a winner and is returned in ``grow_cells`` (it grows a segment).
    5. ``learn_segs`` = the correct segments (step 1) then the best matching ones (step 3),
       int64; ``grow_cells`` int64. active and winner cells are bool (C * cpc,).
    No loop over columns: np.unique(..., return_index=True) after a np.lexsort finds the
    best segment per column.
    """
    raise NotImplementedError("not implemented yet: activate_cells (predicted cells, bursting "
                              "columns, best matching segment, least used cell)")
