"""Week 04 exercise, the KV cache: store each layer's new keys and values, return them all.

During generation each new token needs the keys and values of every earlier token, in
every layer. Recomputing them is quadratic work; the cache keeps them instead, so a decode
step projects only the one new token. The cache is week01's ``KVCache``
(``week01_transformer/src/week01_transformer/cache.py``), which week04's ``Llama`` uses
with ``n_kv_head`` heads; read its module docstring for the protocol.

Fill in ``update`` below, then run ``make week04-exercises`` (``IMPL=solutions`` runs the
worked one). It replaces ``week01_transformer.KVCache.update`` while its tests run: cached
logits equal to the full forward pass, cached generation equal to uncached generation
(greedy and sampled), the capacity and batch checks, and greedy generation equal to
Hugging Face's ``generate`` with its own cache (Llama, Qwen3, Qwen3 with sliding windows).
"""

from __future__ import annotations

import torch


def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
    """Store layer ``layer``'s new keys/values at positions ``self.pos ..``; return all so far.

    What the cache (``self``) holds: ``self.k`` and ``self.v``, preallocated zeros of
    shape (n_layer, B, Hkv, max_len, hd); ``self.pos``, how many positions are filled
    (the same for every row and every layer); ``self.max_len``.

    - ``k``, ``v`` are (B, Hkv, T, hd) for T new tokens. The one-token decode step passes
      them as (B, Hkv, hd) (no T axis): treat that as T = 1.
    - If ``self.pos + T > self.max_len`` raise ``ValueError`` saying that they do not fit,
      e.g. "the cache holds 8 positions: 6 are used and 3 more do not fit". (The model
      checks this too before its layers run, but a cache can be used without a model.)
    - Write them into positions ``pos .. pos + T - 1`` of layer ``layer`` in ``self.k`` /
      ``self.v`` (in place: index the big tensors, ``self.k[layer, :, :, pos:end] = k``).
    - Return ``(keys, values)``, each (B, Hkv, pos + T, hd): every position so far, the new
      ones included, as views of ``self.k`` / ``self.v`` (slices, not copies).
    - Do NOT change ``self.pos``: every layer of one forward pass writes at the same
      positions, and the model calls ``self.advance(T)`` once after the last layer.

    Left-padded rows need nothing here: padding keys are stored like any other and the
    attention mask keeps them from being read.
    """
    raise NotImplementedError("not implemented yet: KVCache.update (write the new keys/values "
                              "at pos in place, return every position so far)")
