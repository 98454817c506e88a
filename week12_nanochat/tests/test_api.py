"""The OpenAI-compatible API through the official ``openai`` client against a live server:
greedy replies equal ``engine.reply``; streamed chunks join to the reply; ``n`` choices are
sampled rows; ``stop`` cuts; bad input is a 400 (or 413) in OpenAI's error shape saying what
is valid; a client that disconnects mid-stream frees its row."""

import json
import time

import httpx
import openai
import pytest

from week12_nanochat.engine import ChatEngine, Sampling
from week12_nanochat.serve import ServeConfig, create_app, running

pytestmark = pytest.mark.core

MODEL = "tiny-random"
QUESTIONS = ["What is 12 + 30?", "Compute 7 * 6.", "hi", "Reverse the word apple."]


@pytest.fixture
def server(engine):
    """``(base url, app)`` of a live server over the conftest ``engine``."""
    app = create_app(engine, ServeConfig(batch_size=4, max_tokens=128, max_messages=8,
                                         max_chars=500), model_id=MODEL)
    with running(app) as url:
        yield url, app


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="x", max_retries=0, timeout=60)


def _joined(chunks) -> tuple[str, str, str | None]:
    """(all streamed words, the words after the last tool output, finish reason)."""
    every, answer, finish = "", "", None
    for c in chunks:
        for ch in c.choices:
            extra = ch.delta.model_extra or {}
            if ch.delta.content:
                every += ch.delta.content
                answer += ch.delta.content
            if (extra.get("nanochat_tool_call") or {}).get("type") == "output":
                answer = ""
            finish = ch.finish_reason or finish
    return every, answer, finish


def test_greedy_replies_equal_the_engines_and_streams_join_to_them(client, engine):
    for q in QUESTIONS:
        messages = [{"role": "user", "content": q}]
        got = client.chat.completions.create(model=MODEL, messages=messages, temperature=0,
                                             max_tokens=40)
        ref = engine.reply(messages, Sampling(max_tokens=40))
        choice = got.choices[0]
        assert choice.message.content == ref.text and choice.finish_reason == ref.finish_reason
        assert got.usage.prompt_tokens == ref.prompt_tokens
        assert got.usage.completion_tokens == ref.completion_tokens
        calls = choice.message.model_extra["nanochat_tool_calls"]
        assert [(c["name"], c["input"], c["output"]) for c in calls] == \
            [(c.name, c.input, c.output) for c in ref.calls]
        assert choice.model_extra["nanochat"]["memory"] is None
        chunks = list(client.chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=40, stream=True))
        every, answer, finish = _joined(chunks)
        assert answer == ref.text and finish == ref.finish_reason
        if not ref.calls:
            assert every == ref.text
        assert {c.object for c in chunks} == {"chat.completion.chunk"}
    parts = [{"type": "text", "text": "What is 12"}, {"type": "text", "text": " + 30?"}]
    got = client.chat.completions.create(model=MODEL, messages=[{"role": "user",
                                                                 "content": parts}],
                                         temperature=0, max_tokens=40)
    assert got.choices[0].message.content == engine.reply(QUESTIONS[0],
                                                          Sampling(max_tokens=40)).text


def test_n_choices_are_sampled_rows_and_stop_cuts(client, engine):
    got = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content":
                                                                 "hi there"}],
                                         temperature=1, n=3, max_tokens=30, seed=5)
    assert [c.index for c in got.choices] == [0, 1, 2]
    ref = engine.stream(["hi there"] * 3, Sampling(temperature=1.0, max_tokens=30, seed=5)).run()
    assert [c.message.content for c in got.choices] == [r.text for r in ref]
    assert len({(r.text, str(r.calls)) for r in ref}) > 1  # the rows differ
    # each row its own generator: choice 2 (seed 7) is what seed 7 gives alone
    one = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content":
                                                                 "hi there"}],
                                         temperature=1, max_tokens=30, seed=7)
    assert one.choices[0].message.content == ref[2].text
    # without a seed each request draws a fresh one (OpenAI's behaviour, the page's regenerate)
    fresh = {client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi there"}], temperature=1,
        max_tokens=30).choices[0].message.content for _ in range(3)}
    assert len(fresh) > 1
    assert got.usage.completion_tokens == sum(r.completion_tokens for r in ref)
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi there"}], temperature=1, n=3,
        max_tokens=30, seed=5, stream=True))
    for j, r in enumerate(ref):  # each choice streams apart (its index) and joins to its reply
        mine = [c.model_copy(update={"choices": [ch for ch in c.choices if ch.index == j]})
                for c in chunks]
        assert _joined(mine)[1:] == (r.text, r.finish_reason)
    full = [engine.reply(q, Sampling(max_tokens=60)) for q in QUESTIONS]
    q, text = max(zip(QUESTIONS, (r.text for r in full)), key=lambda p: len(p[1]))
    stop = text[len(text) // 2: len(text) // 2 + 2]
    got = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": q}],
                                         temperature=0, max_tokens=60, stop=[stop])
    assert got.choices[0].message.content == text[:text.find(stop)].strip()
    assert got.choices[0].finish_reason == "stop"


BAD = [  # (request fields, the words the error must say)
    ({"messages": []}, "messages is empty"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "valid roles are system"),
    ({"temperature": -1}, "temperature is -1.0; valid: 0 (greedy) to 2"),
    ({"n": 9}, "n is 9; valid: 1 to 4"),
    ({"max_tokens": 1000}, "max_tokens is 1000; valid: 1 to 128"),
    ({"max_completion_tokens": 0}, "max_completion_tokens is 0; valid: 1 to 128"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "ends with a user message"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "x"}}]}]}, "only text parts"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "up to 4 non-empty strings"),
    ({"seed": 2**63}, "seed is 9223372036854775808; valid: a 64-bit signed integer"),
]


def test_bad_input_is_a_bad_request_in_openais_error_shape(client, server):
    url, _ = server
    assert [m.id for m in client.models.list()] == [MODEL]
    for fields, words in BAD:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(**body)
        assert words in err.value.message and err.value.status_code == 400
        raw = httpx.post(url + "/v1/chat/completions", json=body).json()
        assert set(raw["error"]) == {"message", "type", "param", "code"}
        assert words in raw["error"]["message"]
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user",
                                                                 "content": "hi"}])
    big = httpx.post(url + "/v1/chat/completions", json={"messages": [
        {"role": "user", "content": "x" * 501}]})
    assert big.status_code == 413 and "at most 500 per message" in big.json()["error"]["message"]
    many = httpx.post(url + "/v1/chat/completions", json={"messages": [
        {"role": "user", "content": "hi"}] * 9})
    assert many.status_code == 413 and "at most 8 per request" in many.json()["error"]["message"]
    huge = httpx.post(url + "/v1/chat/completions", content=b" " * 1_000_001,
                      headers={"Content-Type": "application/json"})  # the body limit (1 MB)
    assert huge.status_code == 413 and huge.json()["error"]["message"] == \
        "the body has 1000001 bytes; at most 1000000 are accepted"
    assert huge.json()["error"]["code"] == "request_too_large"
    for r in (httpx.post(url + "/v1/chat/completions", content=b"{not json",
                         headers={"Content-Type": "application/json"}),
              httpx.post(url + "/v1/chat/completions", json={"messages": "hi"})):
        assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param",
                                                                   "code"}
    gone = httpx.get(url + "/v1/nothing")
    assert gone.status_code == 404 and "GET /v1/models" in gone.json()["error"]["message"]
    mem = httpx.get(url + "/v1/memory")
    assert mem.status_code == 404 and "without memory" in mem.json()["error"]["message"]


def test_a_client_that_disconnects_frees_its_row(chat_tok, make_llama, make_paused):
    engine = ChatEngine(make_llama(chat_tok.vocab_size, seed=0), chat_tok, tools={})
    paused = make_paused(engine)
    app = create_app(paused, ServeConfig(max_tokens=200), model_id=MODEL)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 200,
            "temperature": 0, "stream": True}
    with running(app) as url:
        with httpx.Client(timeout=30) as http:
            with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
                lines = r.iter_lines()
                assert "chat.completion.chunk" in next(line for line in lines if line)
                assert paused.reached.wait(30)  # the batch holds after its first words
        deadline = time.monotonic() + 20
        while not paused.cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert paused.cancelled == [0]  # the server heard the disconnect: the row is cancelled
        paused.go.set()
        deadline = time.monotonic() + 20
        while not app.state.batcher.finished and time.monotonic() < deadline:
            time.sleep(0.02)
        reply = app.state.batcher.finished[-1].replies[0]
    assert reply.finish_reason == "cancelled" and reply.completion_tokens < 20
    assert engine.reply("hi", Sampling(max_tokens=200)).finish_reason == "length"


def test_the_memory_endpoints_teach_list_and_forget(tmp_path, tool_model, chat_tok):
    from week04_modern_arch_tools import Calculator
    from week12_nanochat.memory import Memory, MemoryConfig

    memory = Memory(tmp_path / "mem", tool_model, chat_tok,
                    MemoryConfig(encoder="hash", min_score=0.3, progress=False))
    engine = ChatEngine(tool_model, chat_tok, tools={"calculator": Calculator()}, memory=memory)
    question = "What is my dog called?"
    body = {"messages": [{"role": "user", "content": question}], "temperature": 0,
            "max_tokens": 30}
    try:
        with running(create_app(engine, ServeConfig(), model_id=MODEL)) as url:
            taught = httpx.post(url + "/v1/memory", json={
                "text": "My dog is called Ravenlo. The code for my garage is 4821.",
                "topic": "home", "consolidate": False}).json()
            assert [f["text"] for f in taught["facts"]] == ["My dog is called Ravenlo.",
                                                            "The code for my garage is 4821."]
            assert {f["topic"] for f in taught["facts"]} == {"home"} and "state" in taught["job"]
            listed = httpx.get(url + "/v1/memory").json()
            assert [f["id"] for f in listed["facts"]] == [f.id for f in memory.facts()]
            got = httpx.post(url + "/v1/chat/completions", json=body).json()["choices"][0]
            ref = engine.reply(question, Sampling(max_tokens=30))
            assert ref.memory == "retrieval" and got["nanochat"]["memory"] == ref.memory
            assert got["message"]["content"] == ref.text and got["nanochat"]["sources"]
            dog = taught["facts"][0]["id"]
            gone = httpx.delete(url + f"/v1/memory/{dog}").json()
            assert [f["id"] for f in gone["facts"]] == [dog]
            assert [f["text"] for f in httpx.get(url + "/v1/memory").json()["facts"]] == [
                "The code for my garage is 4821."]
            missing = httpx.delete(url + f"/v1/memory/{dog}")
            assert missing.status_code == 404 and "no taught fact" in missing.json()[
                "error"]["message"]
            for bad, words in (({"text": "  "}, "non-empty text"),
                               ({"text": "x.", "topic": "not a topic!"}, "topic must be"),
                               ({"text": "x.", "colour": "red"}, "colour")):
                r = httpx.post(url + "/v1/memory", json=bad)
                assert r.status_code == 400 and words in r.json()["error"]["message"]
    finally:
        memory.close()


def test_a_forgotten_fact_is_not_retrieved_again(tmp_path, tool_model, chat_tok):
    from week12_nanochat.memory import Memory, MemoryConfig

    memory = Memory(tmp_path / "mem", tool_model, chat_tok,
                    MemoryConfig(encoder="hash", min_score=0.3, progress=False))
    engine = ChatEngine(tool_model, chat_tok, tools={}, memory=memory)
    try:
        with running(create_app(engine, ServeConfig(), model_id=MODEL)) as url:
            taught = httpx.post(url + "/v1/memory", json={
                "text": "My dog is called Ravenlo. My cat is called Tibbles.",
                "consolidate": False}).json()
            httpx.delete(url + f"/v1/memory/{taught['facts'][0]['id']}").raise_for_status()
            got = httpx.post(url + "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "What is my dog called?"}],
                "temperature": 0, "max_tokens": 5}).json()["choices"][0]
        assert "Ravenlo" not in json.dumps(got["nanochat"]["sources"])
    finally:
        memory.close()


def test_a_server_bug_is_a_500_in_openais_shape_that_names_it(client, monkeypatch):
    """An exception inside a route reaches the client as a 500 in the error shape, with the
    exception's type and message (not Starlette's bare 'Internal Server Error')."""
    import week12_nanochat.api as api

    def broken(ticket, model_id):
        raise RuntimeError("the completion object could not be built")

    monkeypatch.setattr(api, "completion", broken)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=MODEL, max_tokens=4, temperature=0,
                                       messages=[{"role": "user", "content": "hi"}])
    err = info.value.body
    assert info.value.status_code == 500 and err["type"] == "server_error"
    assert err["message"] == "RuntimeError: the completion object could not be built"
