"""Week 08 exercises, FlashAttention-2: the online softmax of one query block.

FlashAttention never builds the (Tq, Tk) score matrix. ``week08_sota.flash.flash_forward``
cuts the queries into blocks and, for each, calls the function below, which walks the
keys and values block by block and keeps, per query row, only three running quantities:

- ``m``: the largest score seen so far (starts at ``-inf``);
- ``l``: the sum of ``exp(score - m)`` over the keys seen so far (starts at 0);
- ``acc``: the sum of ``exp(score - m) * value`` (starts at 0).

When a new key block arrives with scores ``s``, the new maximum is
``m_new = max(m, rowmax(s))``; everything summed so far was computed against the old
maximum, so it is rescaled by ``alpha = exp(m - m_new)`` before the new block is added:
``l = alpha * l + rowsum(exp(s - m_new))``, ``acc = alpha * acc + exp(s - m_new) @ v``.
After the last block ``acc / l`` is exactly softmax(scores) @ v, and ``m + log(l)`` is the
row's logsumexp, all the backward pass needs to rebuild any probability block.

Fill in ``flash_block_forward``, then run ``make week08-exercises`` (``IMPL=solutions``
runs the worked one). It replaces ``week08_sota.flash.flash_block_forward``; the package's
outer loop, backward and ``torch.autograd.Function`` stay around it, so it is checked by
outputs *and gradients* equal to PyTorch's SDPA (fp64 to 1e-10) over odd lengths, length 1,
causal and not, grouped-query heads, boolean masks, and ``gradcheck``.
"""

from __future__ import annotations

import torch


def flash_block_forward(q_blk: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                        block_k: int, kv_stop: int, tile_mask_fn=None):
    """One query block over the key/value blocks, with the online softmax.

    - ``q_blk`` (B, Hkv, rep, bq, hd): the block's queries (a group's query heads on axis 2);
    - ``k`` (B, Hkv, 1, Tk, hd), ``v`` (B, Hkv, 1, Tk, hd_v): all keys and values (axis 2
      broadcasts over the group, so ``q_blk @ k[..., j0:j1, :].transpose(-2, -1)`` is the
      (B, Hkv, rep, bq, bk) score tile);
    - read the key blocks ``j0 = 0, block_k, 2 * block_k, ...`` while ``j0 < kv_stop``, each
      ending at ``j1 = min(j0 + block_k, kv_stop)`` (the last one may be shorter);
    - scores are ``(q_blk @ k_tile^T) * scale``; if ``tile_mask_fn`` is given and
      ``tile_mask_fn(j0, j1)`` returns a tensor (not None), it is a boolean that broadcasts
      to the score tile, True where the query may read the key: set the others to ``-inf``.

    Returns ``(o, lse)``: ``o`` (B, Hkv, rep, bq, hd_v) and ``lse`` (B, Hkv, rep, bq).

    Two traps. A row whose keys so far are all masked has ``m_new = -inf``, and
    ``exp(-inf - (-inf))`` is NaN: subtract 0 instead of ``m_new`` where ``m_new`` is
    ``-inf`` (its ``exp`` terms are all 0 anyway). And a row that may read no key at all
    ends with ``l == 0``: return a zero output and ``lse = -inf`` for it (not NaN).
    """
    raise NotImplementedError("not implemented yet: flash_block_forward (the online softmax "
                              "of one query block: running max, running sum, rescaled output)")
