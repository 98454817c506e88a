"""A GPT (decoder-only transformer) written out piece by piece.

The model is GPT-2's architecture: token embeddings plus learned position
embeddings, a stack of pre-LayerNorm blocks (causal multi-head self-attention,
then a GELU MLP, each added back onto the residual stream), a final LayerNorm
and a language-model head that shares its weight with the token embedding.

Attention runs through a kernel looked up by name in an open registry
(``week01_transformer.attention``): ``"explicit"`` (matmuls, a causal mask,
softmax: every step visible) and ``"sdpa"`` (PyTorch's fused kernel) are
registered here; later weeks register theirs.

This file is also the model contract later weeks build on:

- every piece is an overridable part: ``GPT`` builds its embedding, positions,
  blocks, final norm and head with ``make_*`` methods, ties with
  ``tie_weights`` and initialises with ``init_weights``; ``Block(config,
  layer_idx)`` builds its norms, attention and MLP with ``make_norm``,
  ``make_attention(config, layer_idx)`` and ``make_mlp(config, layer_idx)``
  (by default the ``attention_cls`` / ``mlp_cls`` class attributes), so an MoE
  MLP or another attention is a one-class swap, and per-layer choices read
  ``config.layer_config(layer_idx)``;
- one forward: ``forward(idx, cache=None, pad=None, segments=None)`` (``segments``:
  documents packed into a row, each attending only to itself, positions counted per
  document; for training on packed rows); every block takes a
  ``Context`` (the cache, the attention mask, the start position) that the
  model builds once per pass; ``new_cache(batch_size, max_len, pad)`` returns
  the model's ``KVCache`` (``shared.Cache``);
- one fast one-token step, a method of the modules: ``GPT.step(token, cache)``
  calls ``Block.step``, which calls ``attn.step`` and ``mlp.step`` on (B, C)
  rows; a module without its own ``step`` runs its ``forward`` on a length-1
  sequence, so a new module type is always correct and is fast once it has a
  ``step``;
- generation goes through the one decoding loop, ``week01_transformer.decoding``.

Conversion to and from Hugging Face's ``GPT2LMHeadModel`` lives in
``week01_transformer.hf`` (``GPT.from_hf`` / ``GPT.to_hf``).

Left out on purpose: mixed precision, gradient checkpointing and the training
loop (week03 builds the real trainer).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from week01_transformer.attention import attention_kernel
from week01_transformer.cache import KVCache, attention_mask, segment_positions
from week01_transformer.config import PRESETS, GPTConfig
from week01_transformer.decoding import DecodeConfig, generate_ids
from week01_transformer.modules import Block, Context, layer_norm, module_step

__all__ = ["GPT", "GPTConfig", "PRESETS", "Block", "Context"]

# ---------------------------------------------------------------- the model


class GPT(nn.Module):
    """GPT-2: ``forward(idx) -> logits``; satisfies ``shared.LanguageModel``.

    Subclasses change a part by overriding ``block_cls``, ``norm`` or a
    ``make_*`` method, and call ``super().__init__(config)``.
    """

    config_class = GPTConfig
    block_cls = Block
    norm = staticmethod(layer_norm)
    context_cls = Context

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got "
                            f"{type(config).__name__}")
        self.config = config
        self.tok_emb = self.make_embedding(config)
        self.pos_emb = self.make_positions(config)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(self.make_block(config, i) for i in range(config.n_layer))
        self.ln_f = self.make_norm(config)
        self.lm_head = self.make_head(config)
        self.tie_weights()
        self.init_weights()

    # -- the parts
    def make_embedding(self, config: GPTConfig) -> nn.Module:
        return nn.Embedding(config.vocab_size, config.n_embd)

    def make_positions(self, config: GPTConfig) -> nn.Module | None:
        """Learned absolute positions (GPT-2); None for models that rotate q and k instead."""
        return nn.Embedding(config.block_size, config.n_embd)

    def make_block(self, config: GPTConfig, layer_idx: int) -> nn.Module:
        return self.block_cls(config, layer_idx)

    def make_norm(self, config: GPTConfig) -> nn.Module:
        return self.norm(config)

    def make_head(self, config: GPTConfig) -> nn.Module:
        return nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def tie_weights(self) -> None:
        """One matrix reads and writes tokens when ``config.tie_embeddings``."""
        if self.config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

    def init_weights(self) -> None:
        """N(0, 0.02) for linears and embeddings; GPT-2's scaled residual projections."""
        self.apply(self._init_weights)
        # the projections that write into the residual stream get std / sqrt(2 * n_layer),
        # since 2 * n_layer of them add up there and the stream's variance would grow with depth
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            for part in (getattr(block, "attn", None), getattr(block, "mlp", None)):
                proj = getattr(part, "proj", None)
                if isinstance(proj, nn.Linear):
                    nn.init.normal_(proj.weight, mean=0.0, std=resid_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # -- what shared.LanguageModel harnesses read
    @property
    def block_size(self) -> int:
        return self.config.block_size

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once each (a tied head once); ``non_embedding`` drops the
        embeddings (and an untied head)."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
            if self.lm_head.weight is not self.tok_emb.weight:
                n -= self.lm_head.weight.numel()
        return n

    def set_attention(self, impl: str) -> GPT:
        """Switch every block to the registered attention kernel ``impl``."""
        attention_kernel(impl)  # a clear error for an unknown name
        self.config = replace(self.config, attention=impl)
        for block in self.blocks:
            block.attn.impl = impl
        return self

    # -- forward
    def check_input(self, idx: torch.Tensor) -> None:
        """Raise a ValueError/TypeError saying what is wrong with ``idx``.

        The id range check reads ``idx.min()``/``max()``, one host sync per call on a GPU:
        the price of an error message instead of a device-side assert. Inside
        ``torch.compile`` it is skipped (reading a value would break the graph);
        the embedding lookup still refuses an out-of-range id there.
        """
        if not isinstance(idx, torch.Tensor):
            raise TypeError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"idx must hold integer token ids (int64), got dtype {idx.dtype}")
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T), got shape {tuple(idx.shape)}")
        T = idx.size(1)
        if T == 0 or T > self.config.block_size:
            raise ValueError(f"sequence length {T} is out of range: valid lengths are "
                             f"1..{self.config.block_size} (block_size); crop the context")
        if torch.compiler.is_compiling():
            return
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.config.vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} is out of range: valid ids are "
                             f"0..{self.config.vocab_size - 1} (vocab_size {self.config.vocab_size})")

    def new_cache(self, batch_size: int, max_len: int | None = None,
                  pad: torch.Tensor | None = None) -> KVCache:
        """The model's own cache (``shared.Cache``) for ``batch_size`` rows of up to
        ``max_len`` positions (``block_size`` when None); ``pad`` (B,) counts left padding."""
        return KVCache.for_model(self, batch_size, max_len, pad)

    def context(self, T: int, cache=None, pad: torch.Tensor | None = None,
                segments: torch.Tensor | None = None) -> Context:
        """The ``Context`` of a pass over ``T`` new tokens (after the cache's, if any);
        ``segments`` (B, T): packed documents (block-diagonal mask, per-document positions)."""
        if segments is not None:
            if cache is not None:
                raise ValueError("segments= (packed documents) is a whole-row forward; it "
                                 "cannot continue a cache")
            device = self.tok_emb.weight.device
            mask, causal = attention_mask(0, T, pad, None, device=device,
                                          causal=getattr(self.config, "causal", True),
                                          segments=segments)
            return self.context_cls(mask=mask, causal=causal, start=0, length=T, device=device,
                                    segments=segments, pos=segment_positions(segments))
        start = 0 if cache is None else cache.pos
        if cache is not None:
            pad, padded = cache.pad, getattr(cache, "padded", None)
        else:
            padded = None
        if padded is None:
            padded = pad is not None and bool(pad.any())
        device = self.tok_emb.weight.device
        mask, causal = attention_mask(start, T, pad, padded, device=device)
        return self.context_cls(cache=cache, mask=mask, causal=causal, start=start,
                                pad=pad if padded else None, length=T, device=device)

    def positions(self, ctx: Context, T: int, device) -> torch.Tensor:
        """Each new token's position: (T,), or (B, T) when rows are left-padded or packed."""
        if ctx.pos is not None:
            return ctx.pos  # (B, T): counted inside each packed document
        absolute = torch.arange(ctx.start, ctx.start + T, device=device)  # (T,)
        if ctx.pad is None:
            return absolute
        return (absolute[None, :] - ctx.pad[:, None]).clamp(min=0)  # (B, T): from the first real

    def embed(self, idx: torch.Tensor, ctx: Context | None = None) -> torch.Tensor:
        """Token (+ position) embeddings: the start of the residual stream, (B, T, C)."""
        if ctx is None:
            self.check_input(idx)
            ctx = self.context_cls()
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(self.positions(ctx, idx.size(1), idx.device))
        return self.drop(x) if self.training and self.drop.p > 0 else x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and the language-model head: (..., C) -> (..., V)."""
        return self.lm_head(self.ln_f(x))

    def forward(self, idx: torch.Tensor, cache=None, pad: torch.Tensor | None = None,
                segments: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V) for token ids ``idx`` of shape (B, T).

        With a ``cache`` (``new_cache``), ``idx`` continues the tokens already in
        it. ``pad`` (B,) marks left padding when there is no cache (a cache
        carries its own). ``segments`` (B, T) labels documents packed into each row (a
        contiguous run of one value per document, padding a run of its own): a token
        attends only to earlier tokens of its document and counts its position from the
        document's first token, so each document gets the logits it would get alone.
        """
        self.check_input(idx)
        if segments is not None:
            if segments.shape != idx.shape:
                raise ValueError(f"segments shape {tuple(segments.shape)} must equal idx shape "
                                 f"{tuple(idx.shape)}")
            if cache is not None or pad is not None:
                raise ValueError("segments= cannot be combined with a cache or left padding")
            return self.run(idx, segments=segments)
        if cache is not None:
            if idx.size(0) != cache.batch_size:
                raise ValueError(f"batch size {idx.size(0)} differs from the cache's "
                                 f"{cache.batch_size}")
            if cache.pos + idx.size(1) > cache.max_len:
                raise ValueError(f"the cache holds {cache.max_len} positions: {cache.pos} are used "
                                 f"and {idx.size(1)} more do not fit; start a new cache")
        return self.run(idx, cache, pad)

    def run(self, idx: torch.Tensor, cache=None, pad: torch.Tensor | None = None,
            last_only: bool = False, segments: torch.Tensor | None = None) -> torch.Tensor:
        """``forward`` without the input checks; ``last_only`` gives the last position's
        logits only, (B, 1, V) (a prefill needs no more)."""
        T = idx.size(1)
        ctx = self.context(T, cache, pad) if segments is None else \
            self.context(T, segments=segments)
        x = self.embed(idx, ctx)  # (B, T, C)
        for block in self.blocks:
            x = block(x, ctx)
        if cache is not None:
            cache.advance(T)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, C)
        return self.head(x)  # (B, T, V)

    def step(self, token: torch.Tensor, cache) -> torch.Tensor:
        """One decode step: next-token logits (B, V) for ``token`` (B, 1) after the cache.

        The same numbers as ``run(token, cache)[:, -1]`` (tests hold them equal),
        through every module's ``step`` on (B, C) rows. A subclass that overrides
        ``run`` but not ``step`` gets ``run``, so its change is never bypassed.
        """
        if cache.pos >= cache.max_len:
            raise ValueError(f"the cache holds {cache.max_len} positions and all are used; "
                             "start a new cache")
        if type(self).run is not GPT.run and type(self).step is GPT.step:
            return self.run(token.view(-1, 1), cache)[:, -1]
        ctx = self.context(1, cache)
        x = self.embed(token.view(-1, 1), ctx)[:, 0]  # (B, C)
        for block in self.blocks:
            x = module_step(block, x, ctx)
        cache.advance(1)
        return self.head(x)  # (B, V)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor, ignore_index: int = -1) -> torch.Tensor:
        """Mean cross-entropy (nats/token) of ``targets`` (B, T) given ``idx`` (B, T)."""
        if targets.shape != idx.shape:
            raise ValueError(f"targets shape {tuple(targets.shape)} must equal idx shape "
                             f"{tuple(idx.shape)}")
        logits = self(idx)  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=ignore_index)

    # -- generation
    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T); returns (B, T + new).

        ``temperature=0`` is greedy decoding. Sampling draws from ``generator``
        (or a fresh one seeded with ``seed``), so the same seed gives the same
        text whatever else used the global RNG. Runs week01's decoding loop:
        the cache prefills the prompt once, then one token per step; past
        ``block_size`` the context slides (every position recomputed).
        """
        cfg = DecodeConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                           top_p=top_p, seed=seed, use_cache=use_cache)
        return generate_ids(self, idx, cfg, generator=generator)

    # -- Hugging Face conversion (implemented in week01_transformer.hf)
    @classmethod
    def from_hf(cls, model, bias: bool = True, attention: str = "explicit") -> GPT:
        """A GPT holding the weights of a ``transformers.GPT2LMHeadModel``."""
        from week01_transformer.hf import gpt_from_hf

        return gpt_from_hf(model, bias=bias, attention=attention, cls=cls)

    def to_hf(self, attn_implementation: str = "eager"):
        """A ``transformers.GPT2LMHeadModel`` holding this model's weights."""
        from week01_transformer.hf import gpt_to_hf

        return gpt_to_hf(self, attn_implementation=attn_implementation)
