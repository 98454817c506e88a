"""A GPT (decoder-only transformer) written out piece by piece.

The model is GPT-2's architecture: token embeddings plus learned position
embeddings, a stack of pre-LayerNorm blocks (causal multi-head self-attention,
then a GELU MLP, each added back onto the residual stream), a final LayerNorm
and a language-model head that shares its weight with the token embedding.

Attention has two paths that compute the same thing:

- ``"explicit"``: ``q @ k^T / sqrt(d)``, a causal mask of ``-inf``, softmax,
  ``@ v``, every step visible (and the attention weights can be read out);
- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention``, PyTorch's
  fused kernel (flash / memory-efficient attention where the device has them).

The pieces (``CausalSelfAttention``, ``MLP``, ``Block``) are separate modules
with stable names so week04 can subclass them (RoPE, RMSNorm, GQA, SwiGLU, a
KV cache). Conversion to and from Hugging Face's ``GPT2LMHeadModel`` lives in
``week01_transformer.hf`` and is exposed as ``GPT.from_hf`` / ``GPT.to_hf``.

Left out on purpose: KV caching, mixed precision, gradient checkpointing,
weight decay groups and the training loop (week03 builds the real trainer).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

ATTENTION_IMPLS = ("explicit", "sdpa")

# ---------------------------------------------------------------- config


@dataclass
class GPTConfig:
    """Every size of the model. ``GPTConfig.preset("gpt2")`` is the 124M GPT-2."""

    vocab_size: int = 50257
    block_size: int = 1024  # longest context, in tokens
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2 has them)
    attention: str = "explicit"  # "explicit" (matmuls, softmax, mask) or "sdpa"

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"each head gets n_embd / n_head channels; valid n_head values for this n_embd "
                f"are {[h for h in range(1, min(self.n_embd, 64) + 1) if self.n_embd % h == 0]}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"GPTConfig.attention must be one of {ATTENTION_IMPLS}, "
                             f"got {self.attention!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; valid: {sorted(names)}")
        return cls(**d)

    @classmethod
    def presets(cls) -> dict[str, GPTConfig]:
        """The named sizes of this config class (a subclass returns its own table)."""
        return PRESETS

    @classmethod
    def preset(cls, name: str, **overrides) -> GPTConfig:
        """A named size (see ``presets()``), with any field overridden."""
        table = cls.presets()
        if name not in table:
            raise ValueError(f"unknown preset {name!r}; valid: {', '.join(table)}")
        return replace(table[name], **overrides)


PRESETS: dict[str, GPTConfig] = {
    # OpenAI's GPT-2 family (vocab padded to nothing: 50257 tokens, as released)
    "gpt2": GPTConfig(50257, 1024, 12, 12, 768),  # 124,439,808 parameters
    "gpt2-medium": GPTConfig(50257, 1024, 24, 16, 1024),  # 354,823,168
    "gpt2-large": GPTConfig(50257, 1024, 36, 20, 1280),  # 774,030,080
    "gpt2-xl": GPTConfig(50257, 1024, 48, 25, 1600),  # 1,557,611,200
    # CPU sizes; vocab_size is a placeholder that the tokenizer overrides
    "char-tiny": GPTConfig(256, 128, 4, 4, 128, dropout=0.0),  # ~0.8M parameters
    "char-small": GPTConfig(256, 256, 6, 6, 192, dropout=0.1),  # ~2.7M parameters
    "test": GPTConfig(64, 16, 2, 2, 32),  # for unit tests: 28,032 parameters
}

# ---------------------------------------------------------------- modules


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t only sees positions <= t."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.impl = config.attention
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # heads -> residual
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        # mask[i, j] is True where query i may look at key j (j <= i); not saved in checkpoints
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    # -- multi-head attention is a reshape: C channels = n_head groups of head_dim
    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        return q, k, v

    def weights(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Softmax attention weights (B, H, T, T); row t sums to 1 over keys 0..t."""
        T = q.size(-2)
        # scaling by 1/sqrt(hd) keeps the scores' variance ~1 so softmax does not saturate
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))  # (B, H, T, T)
        scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))  # no peeking ahead
        return F.softmax(scores, dim=-1)

    def explicit_attention(self, q, k, v) -> torch.Tensor:
        att = self.attn_dropout(self.weights(q, k))  # (B, H, T, T)
        return att @ v  # (B, H, T, hd)

    def sdpa_attention(self, q, k, v) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, T, hd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.split_heads(x)  # (B, H, T, hd) each
        if self.impl == "sdpa":
            y = self.sdpa_attention(q, k, v)
        else:
            y = self.explicit_attention(q, k, v)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU -> C."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.act = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.act(self.fc(x))))  # (B, T, C)


def layer_norm(config: GPTConfig) -> nn.Module:
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x)).

    A subclass swaps a piece by overriding a class attribute (``attention_cls``,
    ``mlp_cls``, ``norm``), the way week04 adds RoPE, GQA, SwiGLU and RMSNorm.
    """

    attention_cls = CausalSelfAttention
    mlp_cls = MLP
    norm = staticmethod(layer_norm)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = self.norm(config)
        self.attn = self.attention_cls(config)
        self.ln_2 = self.norm(config)
        self.mlp = self.mlp_cls(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, C): read from and write to the residual stream
        x = x + self.mlp(self.ln_2(x))
        return x


# ---------------------------------------------------------------- the model


class GPT(nn.Module):
    """GPT-2: ``forward(idx) -> logits``; satisfies ``shared.LanguageModel``.

    Subclasses change the block with ``block_cls`` and the final norm with ``norm``.
    """

    block_cls = Block
    norm = staticmethod(layer_norm)

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(self.block_cls(config) for _ in range(config.n_layer))
        self.ln_f = self.norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)
        # GPT-2: the projections that write into the residual stream get std / sqrt(2 * n_layer),
        # since 2 * n_layer of them add up there and the stream's variance would grow with depth
        resid_std = 0.02 / math.sqrt(2 * config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=resid_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=resid_std)

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
        """Parameter count, the tied head counted once; ``non_embedding`` drops both embeddings."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once
        if non_embedding:
            n -= self.tok_emb.weight.numel() + self.pos_emb.weight.numel()
        return n

    def set_attention(self, impl: str) -> GPT:
        """Switch every block to the ``"explicit"`` or ``"sdpa"`` attention path."""
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {impl!r}")
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

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token + position embeddings: the start of the residual stream, (B, T, C)."""
        self.check_input(idx)
        T = idx.size(1)
        pos = torch.arange(T, device=idx.device)  # (T,)
        return self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) for token ids ``idx`` of shape (B, T)."""
        x = self.embed(idx)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)

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
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T); returns (B, T + new).

        ``temperature=0`` is greedy decoding. Sampling draws from ``generator``
        (or a fresh one seeded with ``seed``), so the same seed gives the same
        text whatever else used the global RNG. The context is cropped to the
        last ``block_size`` tokens.
        """
        generator = sampling_generator(idx, max_new_tokens, temperature, seed, generator)
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                context = idx[:, -self.config.block_size:]  # (B, <=block_size)
                logits = self(context)[:, -1, :]  # (B, V): the next token's scores
                nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (B, 1)
                idx = torch.cat([idx, nxt], dim=1)
        finally:
            self.train(was_training)
        return idx

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


# ---------------------------------------------------------------- sampling


def sampling_generator(idx: torch.Tensor, max_new_tokens: int, temperature: float,
                       seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """Check ``generate``'s arguments; the generator to draw from (a fresh one seeded with
    ``seed``, 0 by default, unless one is given)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if generator is None:
        generator = torch.Generator(device=idx.device)
        generator.manual_seed(0 if seed is None else seed)
    return generator


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from logits (B, V): argmax at temperature 0, else a draw from the
    top-k / top-p filtered softmax of ``logits / temperature``; (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = filter_logits(logits / temperature, top_k=top_k, top_p=top_p)
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)



def filter_logits(logits: torch.Tensor, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Set to ``-inf`` every logit outside the top-k and outside the top-p nucleus.

    ``top_k`` keeps the k largest logits of each row (ties with the k-th are
    kept too). ``top_p`` keeps the smallest set of most likely tokens whose
    probabilities add up to at least ``top_p`` (always at least one token).
    Both may be given; top-k is applied first, as Hugging Face does.
    """
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of the tokens ranked above
        drop_sorted = mass_before >= top_p  # the nucleus already holds top_p without this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits
