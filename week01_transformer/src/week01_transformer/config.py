"""``GPTConfig``: every size and switch of week01's GPT, and the named presets.

``GPTConfig.preset("gpt2")`` is the 124M GPT-2. ``layer_config(i)`` is the
hook through which a subclass varies a layer (dense then MoE, local then
global attention); ``attention`` names a kernel in the open registry of
``week01_transformer.attention``.

Three switches exist for the lesson's experiments (their defaults are GPT-2):
``attn_scale`` (False: scores are not divided by sqrt(head_dim)), ``causal``
(False: no causal mask, every position reads the future too) and
``norm_position`` ("post": ``x = LN(x + sublayer(x))``, the original
Transformer's order, instead of GPT-2's pre-norm ``x + sublayer(LN(x))``).

Left out: configs of later weeks (they subclass this one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from week01_transformer.attention import ATTENTION_KERNELS

NORM_POSITIONS = ("pre", "post")

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
    attention: str = "explicit"  # a registered kernel: "explicit", "sdpa", or a later week's
    tie_embeddings: bool = True  # the head reads with the token embedding's matrix (GPT-2 does)
    # switches for experiments; the defaults are GPT-2
    attn_scale: bool = True  # False: attention scores are not divided by sqrt(head_dim)
    causal: bool = True  # False: no causal mask, each position also reads the ones after it
    norm_position: str = "pre"  # "pre": x + f(LN(x)) (GPT-2); "post": LN(x + f(x)) (2017)

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
        if self.attention not in ATTENTION_KERNELS:
            raise ValueError(f"{type(self).__name__}.attention must be a registered attention "
                             f"kernel ({', '.join(sorted(ATTENTION_KERNELS))}), got "
                             f"{self.attention!r}; weeks add theirs with register_attention")
        name = type(self).__name__
        if not isinstance(self.attn_scale, bool):
            raise ValueError(f"{name}.attn_scale must be True (scores / sqrt(head_dim), GPT-2) or "
                             f"False (unscaled scores), got {self.attn_scale!r}")
        if not isinstance(self.causal, bool):
            raise ValueError(f"{name}.causal must be True (causal mask, GPT-2) or False (no mask: "
                             f"positions read the future), got {self.causal!r}")
        if self.norm_position not in NORM_POSITIONS:
            raise ValueError(f"{name}.norm_position must be one of {', '.join(NORM_POSITIONS)} "
                             f"(pre: x + f(LN(x)), GPT-2; post: LN(x + f(x)), the 2017 "
                             f"Transformer), got {self.norm_position!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def layer_config(self, layer_idx: int) -> GPTConfig:
        """The config as layer ``layer_idx`` sees it: the hook for per-layer choices (a
        subclass returns e.g. a dense MLP for the first k layers and MoE for the rest)."""
        return self

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
