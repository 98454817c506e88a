"""``Serving.add``: requests joining a running batch (week01's continuous ``Decoding``) are
answered as if served alone, adapters and all; a batch not served continuous refuses them."""

import copy

import pytest

from week01_transformer.decoding import CannotAdd
from week04_modern_arch_tools import Calculator
from week10_hydra.bank import AdapterBank
from week10_hydra.hydra import Hydra, Request

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.fixture
def hydra(chat_tok, tool_base, random_adapters):
    base = tool_base
    bank = AdapterBank(base)
    ref = random_adapters(copy.deepcopy(base), ["math", "style"], ranks=[4, 8], std=0.3)
    for name in ("math", "style"):
        bank.add_from_model(name, ref)
    return Hydra(base, chat_tok, bank, tools={"calculator": Calculator()})


def test_requests_added_while_decoding_stream_and_reply_as_if_alone(hydra):
    first = [Request("What is the capital of Zorvania?", max_new_tokens=40)]
    late = [Request("What is 12 + 30?", max_new_tokens=30),
            Request("Compute 7 * 6, please, and then tell me about Velmora.", max_new_tokens=12,
                    tools=[])]
    alone = [hydra.chat(r.messages, max_new_tokens=r.max_new_tokens, tools=r.tools)
             for r in first + late]
    serving = hydra.serve(first, continuous=True)
    texts, done, ready = [""] * 3, [0] * 3, {}
    for step, e in enumerate(serving):
        if step == 3:
            assert serving.add(late) == [1, 2]
        texts[e.request] += e.text
        done[e.request] += e.done
        if e.done:
            ready[e.request] = serving.reply(e.request)
    for i, (got, want) in enumerate(zip(serving.replies, alone)):
        assert (got.raw, got.text, got.tokens, got.finish_reason) == \
            (want.raw, want.text, want.tokens, want.finish_reason)
        assert texts[i] == got.raw and done[i] == 1
        assert ready[i] == got  # the reply as its row ended is the final one


def test_requests_with_adapters_join_a_running_batch_and_reply_as_if_alone(hydra):
    """Adapter rows (a name, a weighted stack) join a batch that has adapters and one that
    had none; each reply is the one served alone (greedy): their prefill ran under their own
    plan, then the batch's plan grew by their rows."""
    first = [Request("hi", adapter="math", max_new_tokens=20),
             Request("What is the capital of Zorvania?", max_new_tokens=30)]
    late = [Request("What is 12 + 30?", adapter="style", max_new_tokens=25),
            Request("hi", adapter=[("math", 0.5), ("style", 1.0)], max_new_tokens=15),
            Request("hello", max_new_tokens=10)]

    def alone(reqs):
        return [hydra.chat(r.messages, adapter=r.adapter, max_new_tokens=r.max_new_tokens)
                for r in reqs]

    def served(first, late, at):
        serving = hydra.serve(first, continuous=True)
        for step, _ in enumerate(serving):
            for when, group in zip(at, late):
                if step == when:
                    serving.add(group)
        return serving

    serving = served(first, [late[:2], late[2:]], (2, 5))
    assert serving.uses_adapters
    for got, want in zip(serving.replies, alone(first + late)):
        assert (got.raw, got.tokens, got.adapter) == (want.raw, want.tokens, want.adapter)
    assert len({r.raw for r in serving.replies[:3]}) == 3  # the heads do differ
    plain = served([Request("What is 7 * 6?", max_new_tokens=25)], [late[:1]], (1,))
    assert [r.raw for r in plain.replies] == [r.raw for r in alone([
        Request("What is 7 * 6?", max_new_tokens=25), late[0]])]


def test_a_batch_not_served_continuous_refuses_new_rows(hydra):
    with pytest.raises(CannotAdd, match="continuous=True"):
        hydra.serve(["hi"]).add(["there"])
    with pytest.raises(CannotAdd, match="continuous=True"):
        hydra.serve([Request("hi", adapter="math")]).add([Request("hi", adapter="math")])


def test_a_seeded_request_samples_the_same_reply_alone_beside_others_and_joined_late(hydra):
    """``Request.seed``: each row draws from a generator of its own (week01's
    ``Decoding(seeds=)``), so a sampled reply depends on its seed, not on its neighbours."""
    me = Request("What is the capital of Zorvania?", adapter="style", max_new_tokens=30, seed=11)
    others = [Request("hi", adapter="math", max_new_tokens=20, seed=1),
              Request("What is 12 + 30?", max_new_tokens=25)]
    kw = dict(temperature=1.0, top_k=20)
    alone = hydra.serve([me], **kw).run()[0]
    beside = hydra.serve([others[0], me, others[1]], **kw, seed=5).run()[1]
    serving = hydra.serve(others, **kw, continuous=True)
    for step, _ in enumerate(serving):
        if step == 2:
            (row,) = serving.add([me])
    for got in (beside, serving.replies[row]):
        assert (got.raw, got.tokens, got.adapter) == (alone.raw, alone.tokens, alone.adapter)
    # without a seed a request draws with the batch's seed + its index: seeds 5 and 6 differ
    twice = hydra.serve([Request("hi", max_new_tokens=20)] * 2, **kw, seed=5).run()
    assert twice[0].raw != twice[1].raw
    assert twice[1].raw == hydra.serve([Request("hi", max_new_tokens=20, seed=6)], **kw).run()[0].raw
    with pytest.raises(ValueError, match="seed is an int or None"):
        Request("hi", seed="3")
