"""``LlamaConfig``: every size and switch of the Llama-style model, and its presets.

It extends week01's ``GPTConfig`` with the knobs of a modern decoder: kv
heads (GQA), the MLP kind (SwiGLU or ReLU^2), RoPE base and scaling, QK-norm,
tied or untied embeddings, logit soft-capping. ``LlamaConfig.from_depth`` is
nanochat's one-knob family; ``LLAMA_PRESETS`` are the named sizes.

Left out: sliding-window and mixture-of-experts settings (later weeks subclass
this config and vary layers through ``layer_config``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from week01_transformer import GPTConfig

MLP_KINDS = ("swiglu", "relu2")
ROPE_TYPES = ("linear", "llama3")

# ---------------------------------------------------------------- config


@dataclass
class LlamaConfig(GPTConfig):
    """Every size and switch of the Llama-style model (extends week01's ``GPTConfig``).

    ``n_kv_head=None`` means ``n_head`` (multi-head attention);
    ``intermediate_size=None`` means 8/3 * n_embd rounded up to a multiple of
    64 for SwiGLU (same parameter count as a 4x GELU MLP) and 4 * n_embd for
    ReLU^2. ``rope_scaling`` is None or a dict such as
    ``{"rope_type": "linear", "factor": 2.0}``.

    Local and global attention, a per-layer choice: ``sliding_window`` tokens
    is what a local layer reads (itself and the ``window - 1`` positions before
    it); ``window_pattern`` says which layers are local, ``"S"`` (short) or
    ``"L"`` (long, full causal) per layer, repeated over the depth (``"SSSL"``:
    three local layers, then a global one). With a window and no pattern every
    layer is local (Mistral). ``layer_config(i)`` hands each layer its own view.
    """

    vocab_size: int = 32000
    block_size: int = 2048
    n_layer: int = 16
    n_head: int = 16
    n_embd: int = 1024
    bias: bool = False
    attention: str = "sdpa"
    n_kv_head: int | None = None
    intermediate_size: int | None = None
    rope_base: float = 10000.0
    rope_scaling: dict | None = None
    qk_norm: bool = False
    mlp: str = "swiglu"
    tie_embeddings: bool = False
    logit_softcap: float | None = None
    norm_eps: float = 1e-6
    sliding_window: int | None = None
    window_pattern: str | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.bias:
            raise ValueError("LlamaConfig.bias must be False: the Llama family has no biases")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if isinstance(self.n_kv_head, bool) or not isinstance(self.n_kv_head, int) or \
                self.n_kv_head <= 0 or self.n_head % self.n_kv_head:
            valid = [h for h in range(1, self.n_head + 1) if self.n_head % h == 0]
            raise ValueError(f"LlamaConfig.n_kv_head must divide n_head ({self.n_head}): each kv "
                             f"head serves n_head / n_kv_head query heads; valid: {valid}, "
                             f"got {self.n_kv_head!r}")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"LlamaConfig.mlp must be one of {MLP_KINDS}, got {self.mlp!r}")
        if self.intermediate_size is None:
            if self.mlp == "swiglu":
                self.intermediate_size = 64 * math.ceil(8 * self.n_embd / 3 / 64)
            else:
                self.intermediate_size = 4 * self.n_embd
        if not isinstance(self.intermediate_size, int) or self.intermediate_size <= 0:
            raise ValueError(f"LlamaConfig.intermediate_size must be a positive int, "
                             f"got {self.intermediate_size!r}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim = n_embd / n_head = {self.head_dim} must be even: RoPE "
                             "rotates pairs of channels")
        if not self.rope_base > 1.0:
            raise ValueError(f"LlamaConfig.rope_base must be > 1, got {self.rope_base!r}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if kind not in ROPE_TYPES or float(self.rope_scaling.get("factor", 0)) <= 0:
                raise ValueError(f"LlamaConfig.rope_scaling must be None or a dict with rope_type "
                                 f"in {ROPE_TYPES} and a positive factor, got {self.rope_scaling!r}")
        if self.logit_softcap is not None and not self.logit_softcap > 0:
            raise ValueError(f"LlamaConfig.logit_softcap must be None or > 0, "
                             f"got {self.logit_softcap!r}")
        if self.sliding_window is not None and (isinstance(self.sliding_window, bool) or not
                                                isinstance(self.sliding_window, int) or
                                                self.sliding_window <= 0):
            raise ValueError(f"LlamaConfig.sliding_window must be None or a positive int (tokens "
                             f"a local layer reads), got {self.sliding_window!r}")
        if self.window_pattern is not None:
            if not isinstance(self.window_pattern, str) or not self.window_pattern or \
                    set(self.window_pattern) - {"S", "L"}:
                raise ValueError(f"LlamaConfig.window_pattern must be a string of 'S' (local) and "
                                 f"'L' (global) layers, e.g. 'SSSL'; got {self.window_pattern!r}")
            if "S" in self.window_pattern and self.sliding_window is None:
                raise ValueError("LlamaConfig.window_pattern has local ('S') layers but "
                                 "sliding_window is None: give the window size")

    def layer_is_local(self, layer_idx: int) -> bool:
        """Whether layer ``layer_idx`` reads only a sliding window."""
        if self.sliding_window is None:
            return False
        p = self.window_pattern
        return p is None or p[layer_idx % len(p)] == "S"

    def layer_config(self, layer_idx: int) -> LlamaConfig:
        """A global layer sees the config without a window; a local one sees it as it is."""
        if self.sliding_window is None or self.layer_is_local(layer_idx):
            return self
        return replace(self, sliding_window=None, window_pattern=None)

    # -- sizes
    def num_params(self) -> int:
        """Parameter count computed from the config (no tensors are allocated)."""
        C, hd, L = self.n_embd, self.head_dim, self.n_layer
        attn = C * (self.n_head + 2 * self.n_kv_head) * hd + self.n_head * hd * C
        mlp = (3 if self.mlp == "swiglu" else 2) * C * self.intermediate_size
        norms = 2 * C + (2 * hd if self.qk_norm else 0)
        emb = self.vocab_size * C * (1 if self.tie_embeddings else 2)
        return emb + L * (attn + mlp + norms) + C

    def kv_cache_bytes(self, batch_size: int = 1, seq_len: int | None = None,
                       bytes_per_value: int = 2) -> int:
        """Bytes of K and V for ``batch_size`` sequences of ``seq_len`` tokens (bf16 default)."""
        T = self.block_size if seq_len is None else seq_len
        return 2 * self.n_layer * batch_size * self.n_kv_head * T * self.head_dim * bytes_per_value

    # -- constructors
    @classmethod
    def from_depth(cls, depth: int, vocab_size: int = 65536, block_size: int = 2048,
                   aspect_ratio: int = 64, head_dim: int = 128, **overrides) -> LlamaConfig:
        """nanochat's one-knob family: width = ``aspect_ratio * depth``, heads of ``head_dim``.

        The defaults are nanochat's flavour of the architecture (ReLU^2 MLP,
        QK-norm, untied embeddings, logits soft-capped at 15); override any
        field, e.g. ``mlp="swiglu", qk_norm=False, logit_softcap=None`` for a
        model that converts to Hugging Face's Llama.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
            raise ValueError(f"depth must be a positive int, got {depth!r}")
        n_embd = aspect_ratio * depth
        n_head = max(1, -(-n_embd // head_dim))  # ceil: heads of (about) head_dim channels
        while n_embd % n_head:
            n_head += 1
        kw = dict(vocab_size=vocab_size, block_size=block_size, n_layer=depth, n_head=n_head,
                  n_embd=n_embd, mlp="relu2", qk_norm=True, tie_embeddings=False,
                  logit_softcap=15.0)
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def presets(cls) -> dict[str, LlamaConfig]:
        """``LLAMA_PRESETS``: week01's ``preset(name, **overrides)`` looks names up here."""
        return LLAMA_PRESETS


LLAMA_PRESETS: dict[str, LlamaConfig] = {
    # CPU sizes (vocab_size is a placeholder the tokenizer overrides)
    "test": LlamaConfig(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32),
    "tiny": LlamaConfig.from_depth(2, vocab_size=512, block_size=256, head_dim=32),
    "small": LlamaConfig.from_depth(4, vocab_size=4096, block_size=512, head_dim=64),
    "d8": LlamaConfig.from_depth(8, vocab_size=8192, block_size=1024),
    # nanochat's speedrun sizes: width 64 * depth, vocab 2^16, 2048 context
    "d12": LlamaConfig.from_depth(12),
    "d20": LlamaConfig.from_depth(20),  # ~561M parameters
    "d26": LlamaConfig.from_depth(26),  # ~1.08B parameters
    "1b": LlamaConfig.from_depth(26),
    # Meta's Llama-3.2-1B shape (GQA 32/8, SwiGLU, tied), HF-convertible
    "llama3.2-1b": LlamaConfig(vocab_size=128256, block_size=8192, n_layer=16, n_head=32,
                               n_kv_head=8, n_embd=2048, intermediate_size=8192,
                               rope_base=500000.0, tie_embeddings=True, norm_eps=1e-5,
                               rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                             "original_max_position_embeddings": 8192}),
}


def preset_table() -> str:
    """A text table of every preset: depth, width, heads, parameters (computed, not allocated)."""
    lines = [f"{'preset':<12} {'layers':>6} {'n_embd':>6} {'heads':>5} {'kv':>3} {'mlp':>6} "
             f"{'vocab':>7} {'params':>15}"]
    for name, c in LLAMA_PRESETS.items():
        lines.append(f"{name:<12} {c.n_layer:>6} {c.n_embd:>6} {c.n_head:>5} {c.n_kv_head:>3} "
                     f"{c.mlp:>6} {c.vocab_size:>7} {c.num_params():>15,}")
    return "\n".join(lines)
