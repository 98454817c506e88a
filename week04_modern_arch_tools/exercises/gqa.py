"""Week 04 exercises, grouped-query attention (GQA): sharing key/value heads.

``n_kv_head`` key/value heads serve ``n_head`` query heads (``n_head`` a multiple of
``n_kv_head``): query heads ``g * rep .. g * rep + rep - 1`` all read kv head ``g``, with
``rep = n_head // n_kv_head``. Multi-head attention is ``rep == 1``, multi-query attention
``n_kv_head == 1``. The cache stores only the kv heads, so it shrinks by ``rep``.

Fill in the two methods below, then run ``make week04-exercises`` (``IMPL=solutions`` runs
the worked ones). Each takes the attention layer as ``self``; what it has:
``self.n_head`` (H), ``self.n_kv_head`` (Hkv), ``self.head_dim`` (hd).

- ``repeat_kv`` (core) replaces ``week01_transformer.CausalSelfAttention.repeat_kv``, which
  week04's ``LlamaAttention`` inherits: the general forward pass copies each kv head for
  its query heads before the attention kernel. Checked by logits equal to Hugging Face's
  ``LlamaForCausalLM`` and ``Qwen3ForCausalLM`` with 1, 2 and 4 kv heads.
- ``decode_attention`` (stretch) replaces ``LlamaAttention.decode_attention``, the
  one-token decode step's attention, which must not copy the cache at all. Checked by the
  lean ``step`` giving the general forward's logits, and by greedy generation equal to
  Hugging Face's ``generate``.
"""

from __future__ import annotations

import torch


def repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
    """(B, Hkv, T, hd) -> (B, H, T, hd): output head h is input head ``h // rep``.

    So with H = 4, Hkv = 2 the heads come out as (0, 0, 1, 1), not (0, 1, 0, 1): the
    query heads of a group sit next to each other, as in Hugging Face's ``repeat_kv``
    (whose weights the tests load). When ``rep == 1`` return ``x`` itself.

    One way without a loop: add an axis after the heads, ``x[:, :, None]``
    (B, Hkv, 1, T, hd), ``expand`` it to (B, Hkv, rep, T, hd) (a view, no copy yet), then
    ``reshape`` to (B, Hkv * rep, T, hd). ``torch.repeat_interleave`` also does it.
    """
    raise NotImplementedError("not implemented yet: repeat_kv (each kv head repeated for the "
                              "n_head // n_kv_head query heads of its group)")


def decode_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """One query per row over the whole cache, without repeating k and v: (B, H, 1, hd).

    ``q`` (B, H, 1, hd): the new token's query heads, already rotated. ``k``, ``v``
    (B, Hkv, Tk, hd): every cached key and value, the new token's included (views into
    the cache: do not write into them). ``mask`` is None (every key may be read) or a
    boolean (B, 1, 1, Tk), True where a row may read a key (left padding, sliding window).

    The trick: a group's ``rep`` query heads all read the same kv head, so view them as
    ``rep`` query *rows* of that head, ``qg = q.view(B, Hkv, rep, hd)``, and run ordinary
    attention with Hkv heads: scores ``qg @ k.transpose(-2, -1) / sqrt(hd)``
    (B, Hkv, rep, Tk), masked to ``-inf`` where ``mask`` is False (it broadcasts), softmax
    over the keys, times ``v`` -> (B, Hkv, rep, hd), then back to (B, H, 1, hd). No
    causal mask: the one new query is the latest position and may read every key.
    ``torch.nn.functional.scaled_dot_product_attention`` with ``attn_mask=mask`` does the
    middle part in one call, if you prefer.
    """
    raise NotImplementedError("not implemented yet: decode_attention (a group's query heads "
                              "as the query rows of its kv head; no repeat_kv copy)")
