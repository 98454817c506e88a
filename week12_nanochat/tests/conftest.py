"""week12 tests: offline, a tiny chat tokenizer and tiny models built here (no speedrun needed)."""

import threading

import pytest


@pytest.fixture(autouse=True)
def hf_offline(tmp_path, monkeypatch):
    """No hub, and the runs folder inside tmp_path (no test sees a real speedrun)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("NANOCHAT_MODEL", raising=False)


@pytest.fixture(scope="session")
def chat_tok():
    """A 400-token BPE tokenizer (with the chat specials) fitted on week04's tool conversations."""
    from week04_modern_arch_tools import fit_tokenizer, make_tool_dataset

    convs = [c for kind in ("arithmetic", "string", "facts") for c in make_tool_dataset(kind, 80)]
    return fit_tokenizer(convs, vocab_size=400)


@pytest.fixture(scope="session")
def make_llama():
    """``make_llama(vocab_size, seed=0, **overrides)``: a fresh tiny week04 Llama (2 layers x 32,
    GQA 4/2 heads, 256 tokens) in eval mode."""
    import torch

    from week04_modern_arch_tools import Llama, LlamaConfig

    def build(vocab_size: int, seed: int = 0, **kw):
        torch.manual_seed(seed)
        cfg = dict(vocab_size=vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                   block_size=256)
        return Llama(LlamaConfig(**{**cfg, **kw})).eval()

    return build


@pytest.fixture
def tool_model(chat_tok, make_llama):
    """A random tiny Llama whose head favours tool calls and ends of turn: replies with calls,
    outputs and rows ending at different steps."""
    import torch

    from week04_modern_arch_tools.chat import special_ids

    base = make_llama(chat_tok.vocab_size, seed=1)
    sp = special_ids(chat_tok)
    with torch.no_grad():
        for name, mult in (("<|python_start|>", 3.0), ("<|python_end|>", 3.0),
                           ("<|assistant_end|>", 2.0)):
            base.lm_head.weight[sp[name]] *= mult
    return base


@pytest.fixture
def engine(tool_model, chat_tok):
    """A ChatEngine over ``tool_model`` with the calculator (no REPL: fast, no sandbox)."""
    from week04_modern_arch_tools import Calculator
    from week12_nanochat.engine import ChatEngine

    return ChatEngine(tool_model, chat_tok, tools={"calculator": Calculator()})


class Paused:
    """An engine whose batches pause after row 0's first words until ``go`` is set (so a
    test cancels at a known point, not racing the decoding thread)."""

    def __init__(self, engine):
        self.engine, self.reached, self.go = engine, threading.Event(), threading.Event()
        self.cancelled: list[int] = []  # the rows cancelled, in order

    def __getattr__(self, name):  # tools, block_size, memory: the engine's
        return getattr(self.engine, name)

    def stream(self, *args, **kwargs):
        inner = self.engine.stream(*args, **kwargs)
        paused = self

        class Stream:
            def cancel(self, row):
                paused.cancelled.append(row)
                inner.cancel(row)

            def __iter__(self):
                for e in inner:
                    yield e
                    if e.request == 0 and e.kind == "text" and not paused.reached.is_set():
                        paused.reached.set()
                        assert paused.go.wait(30)

        return Stream()


@pytest.fixture
def make_paused():
    """``make_paused(engine)``: the engine wrapped as a ``Paused`` (see the class)."""
    return Paused
