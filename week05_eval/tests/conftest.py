"""Fixtures: a tiny real tokenizer, and tiny models whose right answers are known.

- ``OracleLM(targets)``: puts (almost) all probability on the next token of
  whichever target sequence the input so far is a prefix of, uniform
  elsewhere. Give it the gold ``context + answer`` token sequences and every
  gold continuation scores ~0 nats while any other choice pays ~30 nats at
  its first differing token: a multiple-choice harness must give it 100%.
- ``UniformLM``: all-zero logits, so every token has probability 1/V: loss
  ln V per token, and with equal-length choices accuracy equals chance.
- ``tiny_llama``: week04's Llama at its "test" size with random weights (a
  real model whose scores differ between choices).
"""

import pytest
import torch
import torch.nn as nn

from week02_bpe import BPETokenizer

TEXT = (
    "Question: What is the capital of France?\nAnswer: Paris\n\n"
    "Question: What colour is the sky?\nAnswer: blue\n\n"
    "The quick brown fox jumps over the lazy dog. 1, 2, 3, 42 and -7.\n"
    "def add(a, b):\n    return a + b\n"
) * 4


class OracleLM(nn.Module):
    """Next-token logits that follow the target sequences (see the module docstring)."""

    def __init__(self, targets: list[list[int]], vocab_size: int, block_size: int = 512,
                 peak: float = 30.0):
        super().__init__()
        self.targets = [list(t) for t in targets]
        self.vocab_size, self.block_size, self.peak = vocab_size, block_size, peak
        self.dummy = nn.Parameter(torch.zeros(1))   # gives the model a device

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        logits = torch.zeros(B, T, self.vocab_size)                        # (B, T, V)
        rows = idx.tolist()
        for b in range(B):
            for t in range(T):
                prefix = rows[b][:t + 1]
                for seq in self.targets:
                    if len(seq) > t + 1 and seq[:t + 1] == prefix:
                        logits[b, t, seq[t + 1]] = self.peak
                        break
        return logits


class UniformLM(nn.Module):
    def __init__(self, vocab_size: int, block_size: int = 512):
        super().__init__()
        self.vocab_size, self.block_size = vocab_size, block_size
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*idx.shape, self.vocab_size) + 0.0 * self.dummy    # (B, T, V)


@pytest.fixture(scope="session")
def tokenizer():
    return BPETokenizer.train(TEXT, vocab_size=256 + 9 + 40)


@pytest.fixture
def oracle_cls():
    return OracleLM


@pytest.fixture
def uniform(tokenizer):
    return UniformLM(tokenizer.vocab_size)


@pytest.fixture(scope="session")
def tiny_llama(tokenizer):
    from week04_modern_arch_tools import Llama, LlamaConfig
    torch.manual_seed(0)
    cfg = LlamaConfig.preset("test", vocab_size=tokenizer.vocab_size, block_size=64)
    return Llama(cfg).eval()


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    """No hub, no writes outside tmp_path: runs, HF caches and datasets all go there."""
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    try:  # datasets reads these at import time: patch the live values too
        import datasets.config as dc
    except ImportError:
        return
    monkeypatch.setattr(dc, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(dc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(dc, "HF_MODULES_CACHE", tmp_path / "hf" / "modules")
    if hasattr(dc, "HF_DATASETS_OFFLINE"):
        monkeypatch.setattr(dc, "HF_DATASETS_OFFLINE", True)


def _oracle_llama_cls():
    from week04_modern_arch_tools import Llama, LlamaConfig

    class OracleLlama(Llama):
        """week04's Llama class (so generate_with_tools accepts it) with scripted logits.

        Like ``OracleLM`` it follows the first target sequence the history is a prefix of.
        With a KV cache the model only receives new tokens, so it keeps the history itself:
        a new cache object starts a new history (the prefill).
        """

        def __init__(self, targets, vocab_size, block_size=256):
            super().__init__(LlamaConfig(vocab_size=vocab_size, block_size=block_size,
                                         n_layer=1, n_head=2, n_embd=16))
            self.oracle = OracleLM(targets, vocab_size, block_size)
            self._cache_id, self._history = None, None

        def forward(self, idx, cache=None, pad=None, **kw):
            if cache is None:
                return self.oracle(idx)
            if id(cache) != self._cache_id:
                self._cache_id, self._history = id(cache), idx
            else:
                self._history = torch.cat([self._history, idx], dim=1)
            return self.oracle(self._history)[:, -idx.shape[1]:]

        def run(self, idx, cache=None, pad=None, last_only=False, **kw):
            """week04's unchecked decode entry point: the same scripted logits."""
            logits = self.forward(idx, cache=cache, pad=pad)
            return logits[:, -1:] if last_only else logits

    return OracleLlama


@pytest.fixture
def oracle_llama_cls():
    return _oracle_llama_cls()
