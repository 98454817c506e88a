"""Preference pairs whose winner can be checked, and the real UltraFeedback pairs.

A pair is TRL's conversational preference format plus a checkable answer::

    {"prompt":   [{"role": "user", "content": "What is 37 * 48?"}],
     "chosen":   [{"role": "assistant", "content": [call, output, "37 * 48 = 1776."]}],
     "rejected": [{"role": "assistant", "content": "37 * 48 = 1786."}],
     "kind": "tool", "answer": "1776", "contradicts": []}

``preference_pairs(n, seed, split, kinds)`` draws ``n`` synthetic pairs over
three kinds (spread evenly, then shuffled with ``seed``):

- ``"tool"``: week04's arithmetic conversation (the real calculator call, its
  real output, the right number) against a hallucinated number, alternately
  with no tool call at all and after the call (the output is ignored);
- ``"fact"``: a question about week04's generated world, the true value
  stated (every other pair with week04's search call and its real output)
  against another country's value for that attribute;
- ``"ramble"``: an arithmetic or fact question answered concisely (week04's
  reply) against a rambling reply that never states a value.

Every problem comes from ``make_tool_dataset`` with the same ``split``, so the
split follows week04's ``split_of`` on the problem's key and train and test
pairs never share a problem. ``answer`` is what a correct reply states;
``contradicts`` lists the values that would contradict it (the attribute's
other values in the world, for word-valued facts; numbers need no list).

``is_correct(pair, reply)`` is the verifier behind the "verified win rate": a
number is compared as a number with week05's ``numeric_match`` (the last
number of the reply is its answer); a word must appear as a whole word
(case-insensitive) with none of ``contradicts``. ``reply`` is a string (e.g.
``ToolRun.answer(tok)``), an assistant message or its content list; for the
last two only the text after the last tool output counts, as in ``ToolRun.answer``.

``load_ultrafeedback`` reads ``HuggingFaceH4/ultrafeedback_binarized`` (by
name through ``datasets``, or local files in its schema). A bad row (no
assistant turn last, roles that do not alternate, an empty content, chosen and
rejected with different prompts) is skipped, and a warning counts them;
``on_bad="error"`` raises a ValueError naming the first one instead.

On-policy pairs (the model's own samples ranked by ``is_correct``) are
``week09_alignment.onpolicy``'s.

Left out: multi-turn synthetic prompts, and ties (UltraFeedback rows with
equal scores are kept).
"""

from __future__ import annotations

import random
import re

from week04_modern_arch_tools import make_tool_dataset
from week04_modern_arch_tools.tooldata import ATTRIBUTES, make_world

KINDS = ("tool", "fact", "ramble")
SPLITS = ("train", "test")
UF_HUB = "HuggingFaceH4/ultrafeedback_binarized"
UF_SPLITS = ("train_prefs", "test_prefs", "train_sft", "test_sft", "train_gen", "test_gen")


# ---------------------------------------------------------------- the verifier


def reply_text(reply) -> str:
    """The assistant's own final text: a string as is; for a message or a content list of
    parts, the text parts after the last tool output (what ``ToolRun.answer`` returns)."""
    if isinstance(reply, dict) and "content" in reply:
        reply = reply["content"]
    if isinstance(reply, str):
        return reply
    if not isinstance(reply, list):
        raise ValueError(f"a reply is a string, an assistant message or a list of parts, "
                         f"got {type(reply).__name__}")
    last_output = max((i for i, p in enumerate(reply) if p.get("type") == "output"), default=-1)
    return "".join(p["text"] for p in reply[last_output + 1:] if p.get("type") == "text")


def _is_number(text: str) -> bool:
    from week05_eval.generative import normalize_number
    return normalize_number(text) is not None


def _has_word(word: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def is_correct(pair_or_example: dict, reply) -> bool:
    """Does ``reply`` state ``pair_or_example["answer"]`` and no contradicting value?"""
    from week05_eval.generative import numeric_match

    answer = str(pair_or_example.get("answer", "")).strip()
    if not answer:
        raise ValueError("this pair has no checkable answer (answer is empty: an UltraFeedback "
                         "pair is judged by its scores, not by is_correct)")
    text = reply_text(reply)
    if _is_number(answer):
        return numeric_match(text, answer)
    contradicts = [c for c in pair_or_example.get("contradicts", ()) if c.lower() != answer.lower()]
    return _has_word(answer, text) and not any(_has_word(c, text) for c in contradicts)


# ---------------------------------------------------------------- synthetic pairs


def _assistant(content) -> list[dict]:
    return [{"role": "assistant", "content": content}]


def _wrong_number(value: str, rng: random.Random) -> str:
    from week05_eval.generative import normalize_number
    x = float(normalize_number(value))
    delta = rng.choice((-10, -2, -1, 1, 2, 10, 100))
    wrong = x * 10 if rng.random() < 0.2 and x != 0 else x + delta
    return str(int(wrong)) if float(wrong).is_integer() else repr(wrong)


def _replace_last(text: str, old: str, new: str) -> str:
    i = text.rindex(old)
    return text[:i] + new + text[i + len(old):]


def _tool_pair(conv: list[dict], i: int, rng: random.Random) -> dict:
    call, output, final = conv[1]["content"]
    answer = output["text"]
    wrong = _wrong_number(answer, rng)
    bad_text = _replace_last(final["text"], answer, wrong)
    rejected = bad_text if i % 2 == 0 else [call, output, {"type": "text", "text": bad_text}]
    return {"prompt": conv[:1], "chosen": _assistant(conv[1]["content"]),
            "rejected": _assistant(rejected), "kind": "tool", "answer": answer,
            "contradicts": []}


class _World:
    """The facts of week04's world: which country and attribute a facts question asks."""

    def __init__(self, seed: int):
        self.world = make_world(seed)
        self.values = {a: sorted({str(c[a]) for c in self.world}) for a in ATTRIBUTES}

    def parse(self, question: str) -> tuple[dict, str]:
        attr = next(a for a in ATTRIBUTES if a in question.lower())
        country = next(c for c in self.world if _has_word(c["name"], question))
        return country, attr

    def contradicts(self, attr: str, value: str) -> list[str]:
        if _is_number(value):
            return []
        return [v for v in self.values[attr] if v != value]


def _fact_pair(conv: list[dict], i: int, rng: random.Random, world: _World) -> dict:
    call, output, final = conv[1]["content"]
    country, attr = world.parse(conv[0]["content"])
    answer = str(country[attr])
    wrong = rng.choice([v for v in world.values[attr] if v != answer])
    bad_text = _replace_last(final["text"], answer, wrong)
    if i % 2 == 0:  # the search-call form: the call, its real output, the statement
        chosen = conv[1]["content"]
        rejected = [call, output, {"type": "text", "text": bad_text}]
    else:           # the plain form: the statement alone
        chosen, rejected = final["text"], bad_text
    return {"prompt": conv[:1], "chosen": _assistant(chosen), "rejected": _assistant(rejected),
            "kind": "fact", "answer": answer, "contradicts": world.contradicts(attr, answer)}


_RAMBLE_OPEN = ("That is a great question, and one people ask a lot.",
                "Well, there is quite a bit to say about this.",
                "Interesting! Let me think out loud for a moment.",
                "Questions like this one come up all the time.")
_RAMBLE_MIDDLE = ("It depends on how you look at it, and different sources put it differently.",
                  "There are several ways to approach it, each with its own trade-offs.",
                  "Many people have thought about this over the years without agreeing.",
                  "The details matter here, and it is easy to get lost in them.",
                  "Some would start from first principles, others from experience.")
_RAMBLE_CLOSE = ("In the end it is worth exploring further on your own.",
                 "I hope that gives you something to think about.",
                 "Let me know if you would like to talk about it more.",
                 "So the short version is that it is complicated.")


def _ramble(rng: random.Random) -> str:
    middle = rng.sample(_RAMBLE_MIDDLE, rng.randint(1, 3))
    return " ".join([rng.choice(_RAMBLE_OPEN), *middle, rng.choice(_RAMBLE_CLOSE)])


def _ramble_pair(conv: list[dict], rng: random.Random, world: _World | None) -> dict:
    if world is None:
        answer, contradicts = conv[1]["content"][1]["text"], []
    else:
        country, attr = world.parse(conv[0]["content"])
        answer = str(country[attr])
        contradicts = world.contradicts(attr, answer)
    pair = {"prompt": conv[:1], "chosen": _assistant(conv[1]["content"]),
            "rejected": _assistant(_ramble(rng)), "kind": "ramble", "answer": answer,
            "contradicts": contradicts}
    if is_correct(pair, pair["rejected"][0]):  # the templates hold no number and no value
        raise RuntimeError(f"a ramble stated the answer {answer!r}: fix the ramble templates")
    return pair


def preference_pairs(n: int, seed: int = 0, split: str = "train", kinds=KINDS) -> list[dict]:
    """``n`` synthetic pairs of ``kinds`` from ``split`` (see the module docstring); the same
    arguments give the same list."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown kinds {bad or kinds!r}; valid: {', '.join(KINDS)}")
    counts = {k: n // len(kinds) + (i < n % len(kinds)) for i, k in enumerate(kinds)}
    n_ramble = counts.get("ramble", 0)
    n_arith = counts.get("tool", 0) + (n_ramble + 1) // 2
    n_facts = counts.get("fact", 0) + n_ramble // 2
    arith = make_tool_dataset("arithmetic", n_arith, seed=seed, split=split)
    facts = make_tool_dataset("facts", n_facts, seed=seed, split=split)
    world = _World(seed)
    rng = random.Random(f"prefs-{seed}-{split}")
    pairs = []
    for i, conv in enumerate(arith[:counts.get("tool", 0)]):
        pairs.append(_tool_pair(conv, i, rng))
    for i, conv in enumerate(facts[:counts.get("fact", 0)]):
        pairs.append(_fact_pair(conv, i, rng, world))
    ramble_arith = arith[counts.get("tool", 0):]
    ramble_facts = facts[counts.get("fact", 0):]
    for i in range(n_ramble):
        conv = (ramble_arith if i % 2 == 0 else ramble_facts)[i // 2]
        pairs.append(_ramble_pair(conv, rng, None if i % 2 == 0 else world))
    rng.shuffle(pairs)
    return pairs


# ---------------------------------------------------------------- UltraFeedback


def _uf_pair(row: dict, i: int) -> dict:
    from week09_alignment.data import check_messages
    for col in ("chosen", "rejected"):
        msgs = check_messages(row.get(col), f"UltraFeedback row {i}: {col!r}")
        if len(msgs) < 2:
            raise ValueError(f"UltraFeedback row {i}: {col!r} needs a prompt before the reply")
    if row["chosen"][:-1] != row["rejected"][:-1]:
        raise ValueError(f"UltraFeedback row {i}: chosen and rejected have different prompts")
    return {"prompt": [dict(role=m["role"], content=m["content"]) for m in row["chosen"][:-1]],
            "chosen": [{"role": "assistant", "content": row["chosen"][-1]["content"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"][-1]["content"]}],
            "kind": "ultrafeedback", "answer": "", "contradicts": [],
            "prompt_id": str(row.get("prompt_id", i)),
            "score_chosen": float(row.get("score_chosen", float("nan"))),
            "score_rejected": float(row.get("score_rejected", float("nan")))}


def load_ultrafeedback(split: str = "train_prefs", data_files=None, limit: int | None = None,
                       on_bad: str = "skip", cache_dir: str | None = None) -> list[dict]:
    """``HuggingFaceH4/ultrafeedback_binarized`` as pairs (kind "ultrafeedback", answer "",
    the scores and prompt_id kept): by name, or from ``data_files`` in its schema.

    ``on_bad="skip"`` (default) drops bad rows and warns with their count;
    ``on_bad="error"`` raises on the first bad row, naming it."""
    from week05_eval.tasks import load_rows
    from week09_alignment.data import convert_rows

    if data_files is None and split not in UF_SPLITS:
        raise ValueError(f"unknown UltraFeedback split {split!r}; valid: {', '.join(UF_SPLITS)}")
    return convert_rows(load_rows(UF_HUB, None, split, data_files, cache_dir), _uf_pair, limit,
                        on_bad, f"UltraFeedback {split}")
