"""Week 12 exercise, the server: the OpenAI wire format of a finished chat completion.

The official ``openai`` client (and every tool built on it) reads a non-streamed reply of
``POST /v1/chat/completions`` as one JSON object. ``completion(ticket, model_id)`` builds it
from a finished ``Ticket`` of the batcher (``ticket.replies``: one week12 ``ChatReply`` per
choice, ``n`` of them; read ``week12_nanochat/engine.py`` for its fields):

- ``{"id": "chatcmpl-<random hex>", "object": "chat.completion", "created": <unix seconds>,
  "model": model_id, "choices": [...], "usage": {...}}``;
- choice ``j``: ``{"index": j, "finish_reason": ..., "logprobs": None, "message": {"role":
  "assistant", "content": reply.text, "nanochat_tool_calls": [...]}, "nanochat": ...}``, where
  the finish reason is ``"length"`` for a reply cut at its token limit and ``"stop"``
  otherwise, the tool calls are the reply's calls as JSON (``api._jsonable(reply.calls)``) and
  ``"nanochat"`` is ``api.nanochat_info(reply, ticket)`` (which adapter or memory answered);
- usage: ``prompt_tokens`` is the prompt's (every choice shares it: count it once),
  ``completion_tokens`` the sum over the choices, ``total_tokens`` their sum.

Fill in ``completion``, then run ``make week12-exercises`` (``IMPL=solutions`` runs the worked
one). It replaces ``week12_nanochat.api.completion`` while the API tests run the official
``openai`` client against the live server: its parsed replies must equal the engine's.
"""

from __future__ import annotations


def completion(ticket, model_id: str) -> dict:
    """The ``chat.completion`` object of a finished ticket (see the module docstring)."""
    raise NotImplementedError("not implemented yet: completion (the chat.completion object: "
                              "one choice per reply, usage summed over the choices)")
