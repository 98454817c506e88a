"""week12_nanochat: the product. Every earlier week, assembled by import.

- ``ChatEngine``, ``Sampling``, ``ChatReply``, ``ChatEvent``: the chat model with its tools
  and memory behind the terminal, the page and the API (``engine.py``); ``find_model`` /
  ``load_chat``: the latest speedrun model
"""

from week12_nanochat.engine import (
    ChatEngine,
    ChatEvent,
    ChatReply,
    NoModel,
    Sampling,
    default_tools,
    find_model,
    load_chat,
)

__all__ = ["ChatEngine", "ChatEvent", "ChatReply", "NoModel", "Sampling", "default_tools",
           "find_model", "load_chat"]
