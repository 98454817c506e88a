"""``Serving.add``: requests joining a running batch (week01's continuous ``Decoding``) are
answered as if served alone; adapters cannot join (a clear ``CannotAdd``)."""

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
    bank.add_from_model("math", random_adapters(base, ["math"], ranks=[4], std=0.3))
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


def test_adapters_cannot_join_a_running_batch(hydra):
    plain = hydra.serve(["hi"], continuous=True)
    with pytest.raises(CannotAdd, match="adapters"):
        plain.add([Request("hi", adapter="math")])
    with_adapter = hydra.serve([Request("hi", adapter="math")], continuous=True)
    with pytest.raises(CannotAdd, match="adapters"):
        with_adapter.add(["hi"])
    with pytest.raises(CannotAdd, match="continuous=True"):
        hydra.serve(["hi"]).add(["there"])
