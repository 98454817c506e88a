"""Shared fixtures: tiny configs and models with every weight random (biases and norms too)."""

from __future__ import annotations

import pytest
import torch

from week01_transformer import GPT, GPTConfig


@pytest.fixture(autouse=True)
def one_thread():
    """These models are a few thousand parameters: splitting their tiny matmuls over threads costs
    more in synchronisation than it saves, and when other processes share the cores the waiting
    threads make each op over 10x slower. One thread keeps this folder's tests fast; the previous
    setting is restored so other packages' tests in the same run are unaffected."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Overwrite every parameter with random values, so zero biases and unit LayerNorm
    gains (their usual initial values) cannot hide a mis-mapped or missing weight."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if name.endswith("weight") and p.dim() == 1:  # LayerNorm gain around 1
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)
    return module


@pytest.fixture
def tiny_config() -> GPTConfig:
    return GPTConfig(vocab_size=61, block_size=16, n_layer=2, n_head=4, n_embd=32)


@pytest.fixture
def tiny_model(tiny_config) -> GPT:
    torch.manual_seed(0)
    return randomize_(GPT(tiny_config), seed=1).eval()


@pytest.fixture
def randomize():
    return randomize_
