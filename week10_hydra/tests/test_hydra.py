"""``Hydra``: requests with different adapters, stacks and tools in one batch, each answered as
if it had been served alone; the stream is the reply; clear errors for what cannot be served."""

import copy

import pytest

from week04_modern_arch_tools import Calculator
from week04_modern_arch_tools.chat import special_ids
from week10_hydra.bank import AdapterBank
from week10_hydra.hydra import Hydra, Request

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.fixture
def hydra(chat_tok, tool_base, random_adapters):
    base = tool_base
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
    for text, reply, n, req in zip(texts, serving.replies, done, REQUESTS):
        assert text == reply.raw
        assert n == 1  # every row's last event says so, whether it ended or hit its limit
        assert reply.finish_reason == ("stop" if reply.finished else "length")
        assert reply.finished or reply.tokens == req.max_new_tokens
    assert {r.finish_reason for r in serving.replies} == {"stop", "length"}


def test_a_cancelled_request_leaves_the_batch_and_the_others_are_unchanged(hydra):
    """The server's disconnect: cancelling request 1 after its third token ends its row at
    the next token (finish_reason "cancelled"); every other request gets the reply it gets
    in the uncancelled batch, token for token."""
    full = hydra.serve(REQUESTS).run()
    serving = hydra.serve(REQUESTS)
    seen = 0
    for event in serving:
        if event.request == 1:
            seen += 1
            if seen == 3:
                serving.cancel(1)
    cut = serving.replies
    assert cut[1].finish_reason == "cancelled" and cut[1].tokens == 4 < full[1].tokens
    # a row cut inside a multi-byte character ends in U+FFFD where the full reply goes on
    assert full[1].raw.startswith(cut[1].raw.removesuffix("\ufffd"))
    for i in (0, 2, 3, 4):
        assert cut[i].raw == full[i].raw and cut[i].finish_reason == full[i].finish_reason
    with pytest.raises(ValueError, match="no request 9"):
        serving.cancel(9)


def test_top_k_and_top_p_reach_the_sampler(hydra):
    """top_k=1 is greedy whatever the temperature; a tiny top_p keeps only the top token too;
    a wide sampler at temperature 1 draws something else."""
    greedy = hydra.serve(REQUESTS[:3]).run()
    for kw in ({"top_k": 1}, {"top_p": 1e-6}):
        same = hydra.serve(REQUESTS[:3], temperature=1.0, seed=3, **kw).run()
        assert [r.raw for r in same] == [r.raw for r in greedy]
    wide = hydra.serve(REQUESTS[:3], temperature=1.0, seed=3).run()
    assert [r.raw for r in wide] != [r.raw for r in greedy]


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


@pytest.fixture
def store():
    from week04_modern_arch_tools.tooldata import make_fact_store
    from week10_hydra.encoders import HashEncoder
    from week10_hydra.retrieval import DocumentStore

    s = DocumentStore(HashEncoder(256), chunk_words=60, overlap_words=10, progress=False)
    s.add_documents(make_fact_store(seed=3, n=30))
    return s


def test_rag_requests_read_the_stores_passages_in_the_same_batch(hydra, store):
    """A ``rag=True`` row is prompted with the store's passages for its question (rendered by
    ``rag_messages``) and reports them as its sources; the other rows are untouched, and
    every row still equals its request served alone."""
    from week04_modern_arch_tools import render_for_completion
    from week10_hydra.rag import rag_messages

    h = Hydra(hydra.base, hydra.tokenizer, hydra.bank, store=store, rag_k=2, rag_chars=400,
              tools={"calculator": Calculator()})
    country = store.chunks[5].source.split("#")[0].capitalize()
    q = f"What is the capital of {country}?"
    reqs = [Request(q, adapter="facts", rag=True, max_new_tokens=20),
            Request("What is 2 + 2?", adapter="math", max_new_tokens=20),
            Request(q, adapter=None, rag=True, max_new_tokens=20)]
    serving = h.serve(reqs)
    replies = serving.run()
    hits = store.search(q, k=2)
    assert [x.source for x in replies[0].sources] == [x.source for x in hits]
    assert hits[0].source.split("#")[0] == country.lower()  # the right document comes first
    assert replies[1].sources == []
    prompt = render_for_completion(rag_messages([{"role": "user", "content": q}], hits,
                                                max_chars=400), hydra.tokenizer)
    assert serving.decoding.runs[0].prompt == prompt
    for r, reply in zip(reqs, replies):
        alone = h.chat(r.messages, adapter=r.adapter, rag=r.rag, max_new_tokens=20)
        assert alone.raw == reply.raw


def test_the_store_answers_the_search_tool(hydra, store):
    """Hydra(store=...) gives the model a ``search`` tool backed by the same store (week04's
    tool protocol), unless a ``search`` tool is given explicitly."""
    from week04_modern_arch_tools.chat import call_tool

    h = Hydra(hydra.base, hydra.tokenizer, hydra.bank, store=store, rag_k=1)
    country = store.chunks[0].source.split("#")[0]
    name, arg, out = call_tool(f"search: capital of {country}", h.tools)
    assert name == "search" and out.startswith("[1] ") and country in out.split(":")[0]
    mine = {"search": Calculator()}
    assert Hydra(hydra.base, hydra.tokenizer, hydra.bank, store=store, tools=mine).tools[
        "search"] is mine["search"]


def test_library_names_nested_chains_and_auto_routing_in_one_batch(hydra, tmp_path,
                                                                 random_adapters):
    """Behind an ``AdapterLibrary`` a request names a nested adapter ("domain/task"), which
    serves its whole chain, and ``adapter="auto"`` asks the prototype router: each row
    equals the bank serving the resolved stack by hand."""
    from week10_hydra.library import AdapterLibrary
    from week10_hydra.routing import PrototypeRouting

    lib = AdapterLibrary(tmp_path / "lib", hydra.bank)
    trainer = random_adapters(copy.deepcopy(hydra.base), ["d", "t", "m"], std=0.3, seed=7)
    lib.save("math", trainer, adapter="m")  # replaces the bank's "math" when first served
    lib.save("domain", trainer, adapter="d")
    lib.save("domain/task", trainer, adapter="t", parent="domain")
    router = PrototypeRouting.fit(hydra.base, hydra.tokenizer, {
        "math": ["What is 3 + 4?", "Compute 12 * 9.", "Calculate 100 - 7"],
        "domain/task": ["What is the capital of Zorvania?", "Which language do they speak?"]},
        bank=hydra.bank)
    h = Hydra(hydra.base, hydra.tokenizer, lib, router=router,
              tools={"calculator": Calculator()})
    reqs = [Request("What is 5 + 6?", adapter="auto", max_new_tokens=16),
            Request("What is the capital of Velmora?", adapter="auto", max_new_tokens=16),
            Request("hi", adapter="domain/task", max_new_tokens=16),
            Request("hi", adapter=None, max_new_tokens=16)]
    replies = h.serve(reqs).run()
    assert [r.adapter for r in replies[:3]] == ["math", "domain/task", "domain/task"]
    bank_only = Hydra(hydra.base, hydra.tokenizer, hydra.bank,
                      tools={"calculator": Calculator()})
    by_hand = [bank_only.chat(r.messages, adapter=s, max_new_tokens=16) for r, s in zip(
        reqs, ["math", [("domain", 1.0), ("domain/task", 1.0)],
               [("domain", 1.0), ("domain/task", 1.0)], None])]
    assert [r.raw for r in replies] == [r.raw for r in by_hand]
    assert replies[2].raw != bank_only.chat("hi", adapter="domain/task",
                                            max_new_tokens=16).raw  # the leaf alone differs


def test_each_request_calls_only_its_own_tools(hydra):
    """``Request(tools=[...])`` limits what a row may call: the same finished call
    ``calculator: 6*7`` (fed to the loop's token hook, as the model would write it) runs the
    calculator in a row that has it and answers week04's "unknown tool" error in a row of the
    same batch that was given no tools; an unknown tool name is a clear error."""
    tok, sp = hydra.tokenizer, special_ids(hydra.tokenizer)
    serving = hydra.serve([Request("What is 6 * 7?"), Request("What is 6 * 7?", tools=[])])
    call = [sp["<|python_start|>"], *tok.encode("calculator: 6*7"), sp["<|python_end|>"]]
    forced = {}
    for b in (0, 1):
        for t in call:
            forced[b] = serving.decoding._on_token(b, t, False)
    assert tok.decode(forced[0][1:-1]) == "42"
    assert tok.decode(forced[1][1:-1]).startswith("Error: unknown tool 'calculator'")
    assert [c.output for c in serving.decoding.runs[0].calls] == ["42"]
    with pytest.raises(ValueError, match="lacks"):
        hydra.chat("hi", tools=["python"])
    with pytest.raises(ValueError, match="list of tool names"):
        Request("hi", tools="calculator")


def test_the_stream_decodes_each_token_once_and_splits_no_character(hydra, chat_tok):
    """Sampled bytes split multi-byte characters across tokens (and make invalid UTF-8): the
    incremental decoder's deltas (one token decoded per event) join to the same text as the
    whole-text path's, which is the raw reply, with one event per token either way."""
    class WholeText:  # the same tokenizer without token_to_bytes: the whole-text path
        def __init__(self, tok):
            self._tok = tok

        def __getattr__(self, name):
            if name == "token_to_bytes":
                raise AttributeError(name)
            return getattr(self._tok, name)

    prompts = [Request(f"Say {'é' * 3} {i}", adapter=None, max_new_tokens=40) for i in range(4)]
    runs = []
    for tok in (chat_tok, WholeText(chat_tok)):
        h = Hydra(hydra.base, tok, hydra.bank, tools={})
        serving = h.serve(prompts, temperature=1.5, seed=3)
        assert (serving._decoders[0] is None) == (tok is not chat_tok)
        events = list(serving)
        runs.append(([(e.request, e.text) for e in events], serving.replies))
    (fast, replies), (slow, _) = runs
    assert len(fast) == len(slow) == sum(r.tokens for r in replies)
    for i, reply in enumerate(replies):
        joined = ["".join(t for r, t in run if r == i) for run in (fast, slow)]
        assert joined[0] == joined[1] == reply.raw
    assert any("\ufffd" in r.raw for r in replies)  # the sampled bytes did break characters
