"""Week 01 exercises, the modules: the MLP, the transformer block and multi-head attention.

Fill in the functions below, then run ``make week01-exercises``. Each one is a method: it
replaces the method named in its docstring on the package's class (``self`` is the module,
with its layers already built and loaded) while its tests run, so everything around it is
the package's own code. The tests run the whole GPT and compare its logits and gradients
with Hugging Face's GPT-2 holding the same random weights (to 1e-5), check causality, and
(for the stretch) generate with and without the key/value cache.

- ``mlp_forward`` (core): ``MLP.forward``
- ``block_forward`` (core): ``Block.forward``
- ``attention_forward`` (stretch): ``CausalSelfAttention.forward``

Shapes: B batch rows, T tokens, C = n_embd channels, H heads of hd = C / H channels.
"""

from __future__ import annotations

import torch


def mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    """``MLP.forward``: the position-wise feed-forward network, x (..., C) -> (..., C).

    GPT-2's MLP widens each position's vector 4x, applies a nonlinearity, and narrows it
    back; it works on each position alone (attention is where positions talk). In order:

    1. ``self.fc``: the widening linear layer, C -> 4C;
    2. ``self.act``: the activation, GPT-2's tanh-approximated GELU ("gelu_new"):
       ``0.5 * h * (1 + tanh(sqrt(2 / pi) * (h + 0.044715 * h**3)))``;
    3. ``self.proj``: the narrowing linear layer, 4C -> C (it writes into the residual
       stream);
    4. ``self.dropout`` (the identity at inference).

    Use the module's own parts rather than hard-coding GELU: a subclass swaps the
    activation through ``make_act``. The same forward also serves one-token decode steps,
    where x is (B, C): nothing here may assume a T dimension.
    """
    raise NotImplementedError("not implemented yet: MLP.forward (fc, GELU, proj, dropout; "
                              "see its docstring)")


def block_forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
    """``Block.forward``: one pre-norm transformer block, x (B, T, C) -> (B, T, C).

    ``x`` is the residual stream. Each sub-layer reads a LayerNorm-ed copy of it and ADDS
    its output back (GPT-2 is pre-norm: the norm sits inside the branch, so the stream
    itself is never normalised and gradients flow straight through the additions):

        x = x + attn(ln_1(x), ctx)      # positions exchange information
        x = x + mlp(ln_2(x))            # each position is processed on its own

    The parts are ``self.ln_1``, ``self.attn``, ``self.ln_2`` and ``self.mlp``. Pass ``ctx``
    (the pass's cache, mask and start position, or None) on to ``self.attn``; the MLP
    takes no context.
    """
    raise NotImplementedError("not implemented yet: Block.forward (x + attn(ln_1(x), ctx), "
                              "then + mlp(ln_2(x)))")


def attention_forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
    """``CausalSelfAttention.forward``: multi-head causal self-attention, (B, T, C) -> (B, T, C).

    Multi-head attention is a reshape: the C channels are H heads of hd channels, each
    head attending on its own. What ``self`` holds: ``qkv`` (one linear, C -> (H + 2 Hkv) hd:
    the queries, then the keys, then the values), ``proj`` (H hd -> C), ``resid_dropout``,
    ``n_head`` (H), ``n_kv_head`` (Hkv; equal to H in GPT-2), ``head_dim`` (hd) and
    ``layer_idx``.

    1. ``self.qkv(x)`` (B, T, (H + 2 Hkv) hd), split along the last dim into q (H hd), k and
       v (Hkv hd each); view each as (B, T, heads, hd) and move the heads forward:
       ``.transpose(1, 2)`` gives q (B, H, T, hd) and k, v (B, Hkv, T, hd).
    2. The cache: when ``ctx`` is not None and ``ctx.cache`` is not None, the T new tokens
       continue earlier ones: ``k, v = ctx.cache.update(self.layer_idx, k, v)`` stores them
       and returns every key and value so far, (B, Hkv, Tk, hd) with Tk >= T.
    3. ``y = self.attend(q, k, v, ctx)`` (B, H, T, hd): the configured attention kernel
       (``"explicit"`` or ``"sdpa"``, looked up in the registry) with the pass's causal or
       padding mask from ``ctx`` (None is fine: plain causal attention).
    4. Merge the heads back side by side: ``y.transpose(1, 2)`` (B, T, H, hd), then
       ``.reshape(B, T, H * hd)`` (a transpose is not contiguous, so ``view`` would fail).
    5. ``self.proj``, then ``self.resid_dropout``: (B, T, C).

    (The package's own forward gets q, k, v from ``self.project``, the hook where week04
    adds RoPE; here you write the split yourself.) One-token decode steps call this with
    T == 1 and a cache holding the earlier tokens.
    """
    raise NotImplementedError("not implemented yet: CausalSelfAttention.forward (split qkv "
                              "into heads, update the cache, attend, merge heads, proj)")
