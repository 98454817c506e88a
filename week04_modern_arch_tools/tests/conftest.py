"""Shared fixtures: a small chat tokenizer and tiny model configs."""

import pytest
import torch

from week02_bpe import SPECIAL_TOKENS, BPETokenizer


@pytest.fixture(scope="session")
def tokenizer():
    """A 400-token BPE tokenizer with the chat specials, trained on a few sentences."""
    text = ("What is 12 + 30? calculator: 12 + 30 The answer is 42. python: print('abc'[::-1]) "
            "search: capital of Zorvania. The capital of Zorvania is Velmora. " * 20)
    return BPETokenizer.train(text, 300, special_tokens=SPECIAL_TOKENS)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """The tensors here are tiny: one intra-op thread is faster than two fighting over a
    shared 2-core machine (OpenMP barriers made single-token steps 30x slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
