"""Retrieval-augmented prompts: retrieved passages rendered into the question, and citations.

``rag_messages(messages, hits)`` returns a copy of a week04 chat conversation
whose last user message reads (the format a tiny model is fine-tuned on)::

    Sources:
    [1] zorvania#0: Zorvania is a country. Its capital is ...
    [2] kalosia#0: ...

    Question: What is the capital of Zorvania?
    Answer from the sources and cite them as [n].

Passages keep the order of ``hits`` (best first). ``max_chars`` bounds the
whole "Sources:" block: passages are added in order while they fit, the
first one that does not is cut (ending in "...") and the rest are dropped,
so a small context window keeps the best passages. With no hits the block
says "Sources: none". ``citations(answer)`` reads the "[n]" (or "[1, 3]")
references of an answer; ``cited_sources(answer, hits)`` maps them back to
the hits' sources (numbers outside 1..len(hits) are ignored).

Left out: token-budgeted truncation (the budget is characters), quoting
spans and checking that a cited passage supports the claim.
"""

from __future__ import annotations

import copy
import re

SOURCES_HEADER = "Sources:"
QUESTION_PREFIX = "Question: "
CITE_INSTRUCTION = "Answer from the sources and cite them as [n]."
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def render_sources(hits, max_chars: int = 1200) -> str:
    """The "Sources:" block: ``[n] source: text`` lines within ``max_chars`` characters."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 40:
        raise ValueError(f"max_chars must be an int >= 40 (room for one cut passage), "
                         f"got {max_chars!r}")
    if not hits:
        return f"{SOURCES_HEADER} none"
    out = SOURCES_HEADER
    for n, h in enumerate(hits, 1):
        line = f"\n[{n}] {h.source}: {h.text}"
        if len(out) + len(line) > max_chars:
            room = max_chars - len(out) - 3
            if room > len(f"\n[{n}] {h.source}: "):
                out += line[:room] + "..."
            break
        out += line
    return out


def rag_messages(messages: list[dict], hits, max_chars: int = 1200,
                 instruction: str | None = CITE_INSTRUCTION) -> list[dict]:
    """A new conversation: the last user message becomes sources + question + instruction.
    ``messages`` is not modified (a trailing assistant reply is kept as it is)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    users = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise ValueError("rag_messages needs a user message to put the sources in; roles were "
                         f"{[m.get('role') if isinstance(m, dict) else m for m in messages]}")
    last = users[-1]
    question = messages[last].get("content")
    if not isinstance(question, str):
        raise ValueError(f"message {last}: a user's content must be a string")
    text = f"{render_sources(hits, max_chars)}\n\n{QUESTION_PREFIX}{question}"
    if instruction:
        text += f"\n{instruction}"
    out = copy.deepcopy(messages)
    out[last] = {**out[last], "content": text}
    return out


def citations(text: str) -> list[int]:
    """The numbers cited as "[n]" or "[n, m]" in ``text``, in order of first appearance."""
    seen: list[int] = []
    for group in _CITATION.findall(text or ""):
        for n in (int(x) for x in group.split(",")):
            if n not in seen:
                seen.append(n)
    return seen


def cited_sources(text: str, hits) -> list[str]:
    """The sources of the hits ``text`` cites (1-based, as rendered), in citation order."""
    return [hits[n - 1].source for n in citations(text) if 1 <= n <= len(hits)]
