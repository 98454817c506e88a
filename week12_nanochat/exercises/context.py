"""Week 12 exercise, the chat: a context that slides instead of failing.

A model reads at most ``block_size`` tokens. A conversation that grows past that cannot be
answered as it is; a chat that crashes at turn 30 is not a chat. ``fit`` chooses what the
model sees: drop the OLDEST messages until the prompt (``self.prompt_ids(messages)``: the
rendered conversation ending in ``<|assistant_start|>``) leaves room for the reply, and

- a leading system message always stays (it says who the assistant is);
- what is kept starts at a user turn (right after the system message, if any);
- the last message (the user's question) always stays; when it alone is too long, keep its
  END (cut its content's tokens from the front: ``self.tokenizer.encode`` / ``decode``),
  dropping the system message first if that is what it takes;
- the room for the prompt is ``self.block_size - min(max_tokens, self.block_size // 4) -
  reserve`` (``reserve``: the tokens the memory's retrieval will add to the prompt).

Return ``(kept messages, how many messages were dropped)``; raise ``ValueError`` (with "ends
with a user message" in the message) when ``messages`` is empty or does not end with a user
message. Fill in ``fit``, then run ``make week12-exercises`` (``IMPL=solutions`` runs the worked
one). It replaces ``ChatEngine.fit`` while the engine's and the terminal chat's tests run.
"""

from __future__ import annotations


def fit(self, messages: list[dict], max_tokens: int, reserve: int = 0
        ) -> tuple[list[dict], int]:
    """``(messages that fit, how many were dropped)``; ``self`` is the ``ChatEngine``."""
    raise NotImplementedError("not implemented yet: fit (drop the oldest turns until the prompt "
                              "leaves room for the reply; keep the system message and the end "
                              "of the last user message)")
