"""Every week09 test is offline and keeps Hugging Face's caches inside its tmp_path."""

import pytest


@pytest.fixture(autouse=True)
def hf_offline(tmp_path, monkeypatch):
    """No hub, and no datasets / hub cache outside tmp_path (the loaders read local files)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config as dc
    monkeypatch.setattr(dc, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(dc, "HF_MODULES_CACHE", tmp_path / "hf" / "modules")
    monkeypatch.setattr(dc, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def arith_tok():
    """A 300-token BPE tokenizer (with the chat specials) fitted on week04's arithmetic
    conversations; tokenizers never change, so one serves every test."""
    from week04_modern_arch_tools import fit_tokenizer, make_tool_dataset

    return fit_tokenizer(make_tool_dataset("arithmetic", 200, seed=0), vocab_size=300)


@pytest.fixture(scope="session")
def make_llama():
    """``make_llama(tok)``: a fresh tiny week04 Llama (2 layers x 32, 128 tokens, seed 0), one
    per caller so no test sees another's training."""
    import torch

    from week04_modern_arch_tools import Llama, LlamaConfig

    def build(tok, seed: int = 0):
        torch.manual_seed(seed)
        return Llama(LlamaConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_kv_head=2,
                                 n_embd=32, block_size=128))

    return build
