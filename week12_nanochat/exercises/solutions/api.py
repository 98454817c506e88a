"""Week 12 exercise, worked: ``completion`` (see ../api.py for the task)."""

from __future__ import annotations

import secrets
import time

from week12_nanochat.api import _jsonable, nanochat_info


def completion(ticket, model_id: str) -> dict:
    """One choice per reply; the prompt counted once, the completions summed."""
    choices = []
    for j, reply in enumerate(ticket.replies):
        message = {"role": "assistant", "content": reply.text,
                   "nanochat_tool_calls": _jsonable(reply.calls)}
        choices.append({"index": j, "message": message, "logprobs": None,
                        "finish_reason": "length" if reply.finish_reason == "length" else "stop",
                        "nanochat": nanochat_info(reply, ticket)})
    prompt = ticket.replies[0].prompt_tokens
    completion_tokens = sum(r.completion_tokens for r in ticket.replies)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
             "total_tokens": prompt + completion_tokens}
    return {"id": "chatcmpl-" + secrets.token_hex(12), "object": "chat.completion",
            "created": int(time.time()), "model": model_id, "choices": choices, "usage": usage}
