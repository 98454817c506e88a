"""week12_nanochat: the product. Every earlier week, assembled by import; nothing copied.

- the speedrun (``speedrun.py``, ``presets.py``, ``stages.py``): ``run_speedrun`` and
  ``python -m week12_nanochat.speedrun`` (``make speedrun``): tokenizer -> base -> SFT -> RL
  -> eval -> report card -> chat.json, every stage resumable; ``SpeedrunPreset``, ``preset``
  (smoke, cpu, d20, 1b from one depth knob)
- the report card (``card.py``): ``measure``, ``write_card``, ``chat_core``
- the engine (``engine.py``): ``ChatEngine``, ``Sampling``, ``ChatReply``, ``ChatEvent``: the
  model with its tools and memory behind the terminal, the page and the API;
  ``find_model`` / ``load_chat`` the latest speedrun model
- the terminal chat (``chat.py``): ``ChatSession``, ``python -m week12_nanochat.chat``
- the server (``serve.py``, ``api.py``, ``batcher.py``): ``create_app``, ``ServeConfig``,
  ``running``, ``Batcher``; ``python -m week12_nanochat.serve``
- the memory (``memory.py``, ``consolidate.py``): ``Memory``, ``MemoryConfig``, ``Fact``,
  ``MemoryPlan``; ``teachdata.py``: the facts a user teaches, for training and the tests
"""

from week12_nanochat.batcher import BatchConfig, Batcher
from week12_nanochat.card import chat_core, measure, write_card
from week12_nanochat.engine import (
    ChatEngine,
    ChatEvent,
    ChatReply,
    NoModel,
    Sampling,
    default_tools,
    find_model,
    load_chat,
    open_engine,
)
from week12_nanochat.memory import Fact, Memory, MemoryConfig, MemoryPlan
from week12_nanochat.presets import SpeedrunPreset, preset
from week12_nanochat.teachdata import TaughtFact, make_facts

# the three commands' modules load on first use, so `python -m week12_nanochat.chat` (and
# .serve, .speedrun) does not find its own module imported already by the package
_LAZY = {"ChatSession": "week12_nanochat.chat", "create_app": "week12_nanochat.serve",
         "ServeConfig": "week12_nanochat.serve", "running": "week12_nanochat.serve",
         "run_speedrun": "week12_nanochat.speedrun"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'week12_nanochat' has no attribute {name!r}")


__all__ = [
    "run_speedrun", "SpeedrunPreset", "preset", "measure", "write_card", "chat_core",
    "ChatEngine", "ChatEvent", "ChatReply", "NoModel", "Sampling", "default_tools", "find_model",
    "load_chat", "open_engine", "ChatSession", "create_app", "ServeConfig", "running", "Batcher", "BatchConfig",
    "Memory", "MemoryConfig", "Fact", "MemoryPlan", "TaughtFact", "make_facts",
]
