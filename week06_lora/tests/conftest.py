"""Shared fixtures: a tiny week01 GPT and a tiny Hugging Face Llama, random weights, no downloads."""

import pytest
import torch

from week01_transformer import GPT, GPTConfig


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("test")).eval()  # 2 layers, 32 channels, vocab 64


@pytest.fixture
def idx():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 64, (4, 12), generator=g)  # (B, T)


@pytest.fixture
def llama():
    """A tiny transformers.LlamaForCausalLM built from a config (random weights)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=32, tie_word_embeddings=False)
    return transformers.LlamaForCausalLM(cfg).eval()


def randomize_adapter(model, adapter, seed=0, std=0.1):
    """Give B (and A) random values so the adapter actually changes the output."""
    from week06_lora import lora_layers

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            if adapter in layer.lora:
                ad = layer.lora[adapter]
                ad.B.copy_(torch.randn(ad.B.shape, generator=g) * std)
                ad.A.copy_(torch.randn(ad.A.shape, generator=g) * std)
                if ad.magnitude is not None:
                    ad.magnitude.mul_(1 + 0.1 * torch.randn(ad.magnitude.shape, generator=g))


@pytest.fixture
def randomize():
    return randomize_adapter
