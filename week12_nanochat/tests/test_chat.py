"""The terminal chat: streamed replies with tool calls shown apart, commands, a context that
slides, and a clear message when there is no model yet."""

import io

import pytest

from week12_nanochat import chat
from week12_nanochat.chat import ChatSession

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_a_reply_streams_with_its_tool_calls_shown_apart(engine):
    """What the session prints is the reply's words with every call in brackets and every
    output after an arrow, in the engine's order; the reply joins the conversation."""
    for q in ("What is 12 + 30?", "Compute 7 * 6.", "hi", "Reverse the word apple."):
        out = io.StringIO()
        s = ChatSession(engine, out)
        reply = s.say(q)
        if reply.calls:
            break
    assert reply.calls, "the fixture model calls tools on one of these"
    ref = engine.reply([{"role": "user", "content": q}], s.sampling)
    assert reply.text == ref.text and reply.calls == ref.calls
    printed = out.getvalue()
    for call in reply.calls:
        assert f"-> {call.output.strip()[:20]}" in printed.replace("\n-> ", "-> ")
    assert printed.count("[") >= len(reply.calls)
    assert s.messages == [{"role": "user", "content": q},
                          {"role": "assistant", "content": reply.text}]


def test_commands_change_the_session(engine):
    out = io.StringIO()
    s = ChatSession(engine, out)
    s.handle("hello")
    assert len(s.messages) == 2
    s.handle("/clear")
    assert s.messages == []
    s.handle("/temperature 0.8")
    assert s.sampling.temperature == 0.8
    s.handle("/temperature warm")
    assert "usage: /temperature" in out.getvalue() and s.sampling.temperature == 0.8
    s.handle("/tools off")
    assert s.tools is False
    s.handle("/tools maybe")
    assert "usage: /tools on|off" in out.getvalue()
    s.handle("/teach My dog is called Rex.")
    assert "memory is off" in out.getvalue()
    s.handle("/frobnicate")
    assert "unknown command '/frobnicate'" in out.getvalue()
    s.handle("/help")
    assert "/forget ID|TEXT" in out.getvalue()
    assert s.handle("/quit") is False


def test_a_long_conversation_slides_instead_of_failing(engine):
    out = io.StringIO()
    s = ChatSession(engine, out)
    s.sampling.max_tokens = 40
    for i in range(30):
        s.say(f"Please compute {i} * {i} and tell me the result in words.")
    assert "oldest messages slid out" in out.getvalue()


def test_no_model_says_what_to_run(capsys):
    assert chat.main([]) == 2
    assert "make speedrun" in capsys.readouterr().err
