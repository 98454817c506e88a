"""``Hydra``: requests with different adapters, stacks and tools in one batch, each answered as
if it had been served alone; the stream is the reply; clear errors for what cannot be served."""

import copy

import pytest
import torch

from week04_modern_arch_tools import Calculator
from week04_modern_arch_tools.chat import special_ids
from week10_hydra.bank import AdapterBank
from week10_hydra.hydra import Hydra, Request

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.fixture
def hydra(chat_tok, make_llama, random_adapters):
    base = make_llama(chat_tok.vocab_size, seed=1)
    sp = special_ids(chat_tok)
    with torch.no_grad():  # random text with tool calls and rows ending at different steps
        for name, mult in (("<|python_start|>", 3.0), ("<|python_end|>", 3.0),
                           ("<|assistant_end|>", 2.0)):
            base.lm_head.weight[sp[name]] *= mult
    ref = random_adapters(copy.deepcopy(base), ["math", "facts", "style"], ranks=[4, 4, 8],
                          std=0.3)
    bank = AdapterBank(base)
    for n in ("math", "facts", "style"):
        bank.add_from_model(n, ref)
    return Hydra(base, chat_tok, bank, tools={"calculator": Calculator()})


REQUESTS = [
    Request("What is 12 + 30?", adapter="math", max_new_tokens=30),
    Request("What is the capital of Zorvania?", adapter=None, max_new_tokens=40),
    Request([{"role": "user", "content": "Reverse the word apple."}],
            adapter=[("math", 0.5), ("style", 1.0)], max_new_tokens=25),
    Request("hi", adapter={"facts": 1.0}, max_new_tokens=40),
    Request("Compute 7 * 6.", adapter="style", max_new_tokens=12),
]


def test_each_request_in_a_mixed_batch_is_answered_as_if_alone(hydra):
    together = hydra.serve(REQUESTS).run()
    alone = [hydra.chat(r.messages, adapter=r.adapter, max_new_tokens=r.max_new_tokens)
             for r in REQUESTS]
    for t, a, r in zip(together, alone, REQUESTS):
        assert t.raw == a.raw and t.text == a.text and t.tokens == a.tokens
        assert t.tokens <= r.max_new_tokens
    assert len({t.raw for t in together}) == len(REQUESTS)  # different heads, different text
    assert any(t.calls for t in together)  # some row called a tool and got its output forced
    assert len({t.tokens for t in together}) > 1  # rows finished at different steps


def test_the_stream_is_the_reply(hydra):
    serving = hydra.serve(REQUESTS)
    texts, done = [""] * len(REQUESTS), [0] * len(REQUESTS)
    for event in serving:
        texts[event.request] += event.text
        done[event.request] += event.done
    for text, reply, n in zip(texts, serving.replies, done):
        assert text == reply.raw
        assert n == (1 if reply.finished else 0)  # a row cut by its limit has no stop event
    assert any(r.finished for r in serving.replies)


def test_unservable_requests_are_clear_errors(hydra):
    with pytest.raises(ValueError, match="router"):
        hydra.chat("hi", adapter="auto")
    with pytest.raises(ValueError, match="ArrowSpec"):
        hydra.chat("hi", adapter="arrow")
    with pytest.raises(KeyError, match="not loaded"):
        hydra.chat("hi", adapter="nope")
    with pytest.raises(ValueError, match="store"):
        hydra.chat("hi", rag=True)
    with pytest.raises(ValueError, match="max_new_tokens"):
        Request("hi", max_new_tokens=0)
    with pytest.raises(ValueError, match="hooked on this base"):
        Hydra(copy.deepcopy(hydra.base), hydra.tokenizer, hydra.bank)
