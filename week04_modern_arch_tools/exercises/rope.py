"""Week 04 exercises, rotary position embeddings (RoPE): the frequencies and the rotation.

Fill in the two functions below, then run ``make week04-exercises`` (``IMPL=solutions``
runs the worked ones). ``rope_inv_freq`` replaces ``week04_modern_arch_tools.rope.
rope_inv_freq`` (``Rotary`` builds its cos/sin tables from it when a model is made) and
``apply_rope`` replaces ``apply_rope`` (every attention layer's forward rotates q and k
with it), while their tests run. The tests build a small ``Llama``, copy its weights into
Hugging Face's ``LlamaForCausalLM`` / ``Qwen3ForCausalLM`` and compare the logits to
1e-5, so a frequency or a sign that is off anywhere shows.

The layout is Hugging Face's "rotate half": channel pair i of a head is (i, i + hd/2),
not (2i, 2i + 1) as in Meta's original code. The angle of pair i at position t is
``t * inv_freq[i]``; ``Rotary`` stores it twice, ``angles = cat(a, a)`` (T, hd), so that
``cos[t]`` and ``sin[t]`` line up with the channels of a head.
"""

from __future__ import annotations

import torch


def rope_inv_freq(head_dim: int, base: float = 10000.0,
                  scaling: dict | None = None) -> torch.Tensor:
    """The rotation speed of each channel pair, a float32 tensor of shape (head_dim/2,).

    Plain RoPE: ``inv_freq[i] = 1 / base ** (2i / head_dim)`` for i = 0 .. head_dim/2 - 1.
    Compute it exactly as Hugging Face does, so the tables agree to the last bit:
    ``1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)``.

    ``scaling`` (None, or a dict; its kind is ``scaling["rope_type"]``, or ``["type"]`` in
    older configs) stretches the context a model was trained on:

    - ``"linear"`` (position interpolation): every frequency divided by ``scaling["factor"]``.
    - ``"llama3"``: with ``factor``, ``lo = low_freq_factor`` (default 1.0),
      ``hi = high_freq_factor`` (default 4.0) and ``old = original_max_position_embeddings``
      (default 8192), and each pair's wavelength ``w = 2 * pi / inv_freq[i]``:

      - ``w < old / hi`` (fast pairs, short wavelengths): unchanged;
      - ``w > old / lo`` (slow pairs, longer than the old context): ``inv_freq / factor``;
      - otherwise (``old / hi <= w <= old / lo``): a blend, with
        ``smooth = (old / w - lo) / (hi - lo)``:
        ``(1 - smooth) * inv_freq / factor + smooth * inv_freq``.

    ``torch.where`` does the three cases without a loop.
    """
    raise NotImplementedError("not implemented yet: rope_inv_freq (base^(-2i/d) per channel "
                              "pair, then the linear or llama3 scaling; see its docstring)")


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair (i, i + hd/2) of ``x`` by its angle; same shape as ``x``.

    ``x`` is (B, H, T, hd) in the model (a single (hd,) vector in one test); ``cos`` and
    ``sin`` broadcast against it: (1, 1, T, hd) or (B, 1, T, hd) in the model, (hd,) for
    one position. With ``x1, x2 = x[..., :hd/2], x[..., hd/2:]`` each pair turns like a
    2-D vector by the angle a:

        out1 = x1 * cos(a) - x2 * sin(a)
        out2 = x2 * cos(a) + x1 * sin(a)

    which is ``x * cos + rotate_half(x) * sin`` with ``rotate_half(x) = cat(-x2, x1)``
    (write that one yourself: two halves, one ``torch.cat``). A rotation keeps each
    vector's length, and ``apply_rope(q, m) . apply_rope(k, n)`` depends only on m - n:
    that is the whole point of RoPE, and one of the tests.
    """
    raise NotImplementedError("not implemented yet: apply_rope (x * cos + rotate_half(x) * sin "
                              "in the rotate-half layout; see its docstring)")
