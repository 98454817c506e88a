"""``ChatEngine``: the event stream is the reply, split into words, calls and outputs; stop strings
cut a reply and free its row; the sliding context keeps the newest turns within the block."""

import re

import pytest

from week12_nanochat.engine import NoModel, Sampling, find_model

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

QUESTIONS = ["What is 12 + 30?", "Compute 7 * 6.", "hi", "Reverse the word apple.",
             "What is the capital of Zorvania?"]


def test_events_rebuild_the_reply_and_its_tool_calls(engine):
    """Per request: the events' texts, joined, are the raw text week10's Hydra makes for the
    same batch without its special tokens; every call the tools ran has its call segment and
    the output segments are the tools' outputs; the reply's text is the text after the last output;
    one done per request."""
    stream = engine.stream(QUESTIONS, Sampling(max_tokens=60))
    parts = [[] for _ in QUESTIONS]
    done = [0] * len(QUESTIONS)
    for e in stream:
        if e.kind == "done":
            done[e.request] += 1
        else:
            parts[e.request].append((e.kind, e.text))
    assert done == [1] * len(QUESTIONS)
    raw = engine.hydra.serve([{"messages": q, "max_new_tokens": 60} for q in QUESTIONS]).run()
    assert any(r.calls for r in raw) and len({r.completion_tokens for r in stream.replies}) > 1
    for p, reply, r in zip(parts, stream.replies, raw):
        merged = []  # consecutive events of one kind are one segment
        for kind, text in p:
            if merged and merged[-1][0] == kind:
                merged[-1][1] += text
            else:
                merged.append([kind, text])
        assert "".join(t for _, t in merged) == re.sub(r"<\|[a-z_]+\|>", "", r.raw)
        assert len([k for k, _ in merged if k == "call"]) >= len(r.calls)
        outs = [t.strip() for k, t in merged if k == "output"]
        assert len(outs) == len(r.calls)  # each output, whole (the last may hit the limit)
        assert all(c.output.strip().startswith(o) for o, c in zip(outs, r.calls))
        assert outs[:-1] == [c.output.strip() for c in r.calls][:-1]
        assert reply.calls == r.calls and reply.completion_tokens == r.tokens
        last = max([i for i, (k, _) in enumerate(merged) if k == "output"], default=-1)
        assert reply.text == "".join(t for k, t in merged[last + 1:] if k == "text").strip()
        assert reply.finish_reason == r.finish_reason


def test_a_stop_string_cuts_the_reply_and_ends_its_row(engine):
    full = engine.stream(QUESTIONS, Sampling(max_tokens=60)).run()
    longest = max(range(len(full)), key=lambda i: len(full[i].text))
    text = full[longest].text
    stop = text[len(text) // 2: len(text) // 2 + 2]
    cut = engine.stream(QUESTIONS, Sampling(max_tokens=60, stop=(stop,))).run()
    assert cut[longest].finish_reason == "stop"
    assert cut[longest].text == text[:text.find(stop)].strip()
    assert cut[longest].completion_tokens < full[longest].completion_tokens


def test_the_context_slides_instead_of_failing(engine, chat_tok):
    long = []
    for i in range(40):
        long += [{"role": "user", "content": f"What is {i} + {i}?"},
                 {"role": "assistant", "content": f"{i} + {i} = {2 * i}."}]
    long = [{"role": "system", "content": "You are nanochat."}] + long + [
        {"role": "user", "content": "And 3 * 3?"}]
    kept, dropped = engine.fit(long, 64)
    assert dropped > 0 and kept[0]["role"] == "system" and kept[-1] == long[-1]
    assert kept[1:] == long[len(long) - len(kept) + 1:]  # the newest turns, in order
    assert len(engine.prompt_ids(kept)) <= engine.block_size - 64
    reply = engine.reply(long, Sampling(max_tokens=64))
    assert reply.dropped == dropped and reply.prompt_tokens == len(engine.prompt_ids(kept))
    held, _ = engine.fit(long, 64, reserve=40)  # room for the passages retrieval adds
    assert len(engine.prompt_ids(held)) <= engine.block_size - 64 - 40 < len(
        engine.prompt_ids(kept))
    huge = [{"role": "user", "content": "word " * 2000 + "the end"}]
    kept, _ = engine.fit(huge, 32)
    assert kept[-1]["content"].endswith("the end")
    assert len(engine.prompt_ids(kept)) <= engine.block_size - 32
    with pytest.raises(ValueError, match="ends with a user message"):
        engine.fit([{"role": "assistant", "content": "hi"}], 8)


def test_no_model_says_what_to_run(tmp_path):
    with pytest.raises(NoModel, match="make speedrun"):
        find_model(tmp_path)
