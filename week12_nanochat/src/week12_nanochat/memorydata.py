"""Training data for the memory's adapters: pairs made from free-text facts, and replay.

``fact_conversations(facts)``: the statement in the second person ("My dog is
X." -> "Your dog is X.") answers its given ``questions`` (teachdata's trained
phrasings, when the teacher gave them) and two generic prompts about its
subject ("What do you know about my dog?", "Tell me what I said about my
dog."), closed-book and (``reading``) as a week10 RAG reading with the fact
among two others, cited (teachdata's format). ``examples_of`` renders them as
week07 examples (week04's ``render_conversation``: ids and the loss mask).

``replay_prompts`` / ``record_replay``: SELF-GENERATED REPLAY, the model's own
greedy replies (week04's ``generate_with_tools``, tools really run) to week04's
tool tasks and (``reading``) week10 RAG readings of teachdata "train" facts,
recorded as examples with mask 1 on the tokens it sampled.

Left out: question generation beyond the subject heuristic (the words before
the first verb of a small list), and paraphrasing the statement itself.
"""

from __future__ import annotations

import random
import re

from week04_modern_arch_tools import generate_with_tools, make_tool_dataset, render_conversation
from week10_hydra.rag import rag_messages
from week10_hydra.retrieval import Hit

_SUBJECT = re.compile(r"^(.+?)\s+(?:is|are|was|works|lives|has|likes|loves|plays)\b", re.I)


# ---------------------------------------------------------------- training pairs


def second_person(text: str) -> str:
    """"My dog is X." -> "Your dog is X." (the assistant says the user's fact back)."""
    out = re.sub(r"\bmy\b", "your", text)
    return re.sub(r"\bMy\b", "Your", out)


def fact_prompts(fact) -> list[str]:
    """The prompts a fact is trained to answer: its given questions, then two generic ones
    about its subject (the words before its verb; the whole sentence without one)."""
    m = _SUBJECT.match(fact.text)
    subject = m.group(1) if m else fact.text.rstrip(".!?")
    subject = subject[:1].lower() + subject[1:] if subject[:2] in ("My", "The") else subject
    return [*fact.questions, f"What do you know about {subject}?",
            f"Tell me what I said about {subject}."]


def fact_conversations(facts: list, seed: int = 0, reading: bool = True) -> list[list[dict]]:
    """Closed-book (and, with ``reading``, RAG-reading) conversations for every prompt of
    every fact."""
    rng = random.Random(f"memory-{seed}")
    convs = []
    for fact in facts:
        reply = second_person(fact.text)
        for q in fact_prompts(fact):
            convs.append([{"role": "user", "content": q}, {"role": "assistant", "content": reply}])
            if not reading:
                continue
            others = rng.sample([f for f in facts if f.id != fact.id], min(2, len(facts) - 1))
            shown = others + [fact]
            rng.shuffle(shown)
            hits = [Hit(0.0, f"{f.doc}#0", f.text, i) for i, f in enumerate(shown)]
            n = shown.index(fact) + 1
            cited = f"{reply.rstrip('.!?')} [{n}]."
            convs.append(rag_messages([{"role": "user", "content": q}], hits)
                         + [{"role": "assistant", "content": cited}])
    return convs


def examples_of(convs: list[list[dict]], tokenizer, block_size: int) -> list[dict]:
    """week07 examples ``{"ids", "mask"}`` (week04's render, cut to the block)."""
    out = []
    for conv in convs:
        ids, mask = render_conversation(conv, tokenizer, max_tokens=block_size)
        if any(mask[1:]):
            out.append({"ids": ids, "mask": mask})
    return out


# ---------------------------------------------------------------- self-generated replay


def replay_prompts(n: int, seed: int = 0, reading: bool = True) -> dict[str, list]:
    """``{kind: prompts}``: ``n`` prompts split over tool arithmetic, tool facts and (with
    ``reading``) RAG reading of teachdata train facts (conversations without their replies)."""
    from week12_nanochat.teachdata import make_facts, reading_conversations

    if not reading:
        k = max(1, n // 2)
        return {"arithmetic": [c[:1] for c in make_tool_dataset("arithmetic", k, seed)],
                "facts": [c[:1] for c in make_tool_dataset("facts", n - k, seed)]}
    k = max(1, n // 3)
    return {"arithmetic": [c[:1] for c in make_tool_dataset("arithmetic", k, seed)],
            "facts": [c[:1] for c in make_tool_dataset("facts", k, seed)],
            "reading": [c[:-1] for c in reading_conversations(
                make_facts(max(3, (n - 2 * k + 1) // 2), seed, "train"), seed)][:n - 2 * k]}


def record_replay(model, tokenizer, prompts: dict[str, list], tools: dict,
                  max_new_tokens: int = 48) -> dict[str, list[dict]]:
    """The model's own greedy replies (week04 ``generate_with_tools``, tools run) as examples:
    mask 1 on the sampled tokens, 0 on the prompt and the forced tool outputs."""
    out = {}
    for kind, ps in prompts.items():
        runs = generate_with_tools(model, tokenizer, ps, tools, max_new_tokens=max_new_tokens)
        exs = []
        for run in runs:
            mask = [0] * len(run.prompt) + [0 if f else 1 for f in run.forced]
            if any(mask[1:]):
                exs.append({"ids": list(run.prompt) + list(run.ids), "mask": mask})
        out[kind] = exs
    return out


__all__ = ["fact_conversations", "fact_prompts", "examples_of", "record_replay",
           "replay_prompts", "second_person"]
