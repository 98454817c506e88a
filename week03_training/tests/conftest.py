"""Fixtures: a tiny language model, a tiny token stream, and a prepared data folder.

``TinyLM`` is a one-block transformer (embedding, causal attention, MLP with
dropout, norm, head) small enough that a training step takes milliseconds; it
satisfies ``shared.LanguageModel`` and has dropout so RNG-state restore matters.
``ArrayLoader`` follows week02's ``TokenLoader`` contract (``next_batch``,
``state_dict``/``load_state_dict``) over an in-memory token array, so the unit
tests do not depend on the tokenizer. ``data_dir`` prepares a real week02 data
folder (BPE tokenizer trained on a small local text) for the CLI tests.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

TESTS = Path(__file__).parent


@dataclass
class TinyConfig:
    vocab_size: int = 64
    block_size: int = 16
    n_embd: int = 32
    n_head: int = 2
    n_layer: int = 1
    dropout: float = 0.1


class TinyLM(nn.Module):
    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.vocab_size = config.vocab_size
        c = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, c)
        self.wpe = nn.Embedding(config.block_size, c)
        self.ln1 = nn.LayerNorm(c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)
        self.ln2 = nn.LayerNorm(c)
        self.fc = nn.Linear(c, 4 * c)
        self.fc_out = nn.Linear(4 * c, c)
        self.drop = nn.Dropout(config.dropout)
        self.ln_f = nn.LayerNorm(c)
        self.lm_head = nn.Linear(c, config.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        h = self.config.n_head
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))     # (B, T, C)
        q, k, v = self.qkv(self.ln1(x)).split(x.size(-1), dim=-1)
        q, k, v = (t.view(B, T, h, -1).transpose(1, 2) for t in (q, k, v))   # (B, h, T, d)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, -1))
        x = x + self.drop(self.fc_out(F.gelu(self.fc(self.ln2(x)))))
        return self.lm_head(self.ln_f(x))                                    # (B, T, V)


class ArrayLoader:
    """Random windows of a 1-D token tensor; the generator state is the loader state."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, block_size: int, seed: int = 0):
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.vocab_size = int(tokens.max()) + 1
        self.gen = torch.Generator().manual_seed(seed)
        self.tokens_seen = 0

    def next_batch(self):
        starts = torch.randint(0, len(self.tokens) - self.block_size - 1, (self.batch_size,),
                               generator=self.gen)
        x = torch.stack([self.tokens[s:s + self.block_size] for s in starts])
        y = torch.stack([self.tokens[s + 1:s + 1 + self.block_size] for s in starts])
        self.tokens_seen += x.numel()
        return x, y

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state().tolist(), "tokens_seen": self.tokens_seen}

    def load_state_dict(self, d: dict) -> None:
        self.gen.set_state(torch.tensor(d["gen"], dtype=torch.uint8))
        self.tokens_seen = d["tokens_seen"]


def make_tokens(n: int = 4000, vocab: int = 64, seed: int = 0) -> torch.Tensor:
    """A learnable stream: a noisy repeating pattern, so the loss can fall."""
    g = torch.Generator().manual_seed(seed)
    base = torch.arange(n) % 17 * 3 % vocab
    noise = torch.randint(0, vocab, (n,), generator=g)
    keep = torch.rand(n, generator=g) < 0.8
    return torch.where(keep, base, noise)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and avoids spin-waiting on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def tiny_model():
    def make(seed: int = 0, **kw) -> TinyLM:
        torch.manual_seed(seed)
        return TinyLM(TinyConfig(**kw))
    return make


@pytest.fixture
def loaders():
    def make(batch_size: int = 4, block_size: int = 16, seed: int = 0):
        toks = make_tokens()
        return (ArrayLoader(toks[:3500], batch_size, block_size, seed),
                ArrayLoader(toks[3500:], batch_size, block_size, seed + 1))
    return make


CORPUS = """\
The quick brown fox jumps over the lazy dog. A list is a mutable sequence; a tuple is not.
Python evaluates expressions from left to right. The for statement iterates over the items
of any sequence, in the order that they appear. Functions are defined with def and return a
value with return. Exceptions are raised with raise and handled with try and except.
"""


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A week02 data folder (index.json + shards) built from a small local text."""
    from week02_bpe import BPETokenizer, prepare
    root = tmp_path_factory.mktemp("data")
    docs = [CORPUS * 3 + f"Document number {i}. " * 5 for i in range(40)]
    tok = BPETokenizer.train("\n".join(docs), vocab_size=300)
    tok.save(root / "tokenizer")
    prepare(docs, tok, root / "prepared", val_fraction=0.2, progress=False, num_workers=1)
    return root / "prepared"


@pytest.fixture
def python() -> str:
    return sys.executable
