"""Verifiable rewards and the RL prompt sets GRPO trains on.

``rl_prompts(kind, n, seed, split)`` turns week04's synthetic tool-use
conversations into RL examples ``{"prompt": [user message], "answer": str,
"kind": kind}``; the splits are week04's (``tooldata.split_of`` over each
problem's key), so a held-out problem is never trained on:

- ``"arithmetic"``: "What is 37 * 48?"; the answer is the calculator's result;
- ``"facts"``: a question about week04's generated world (``make_world(seed)``);
  the answer is the attribute's value ("Velti", "1234000");
- ``"tool"``: arithmetic, string and fact requests interleaved; the answer is
  the name of the tool the reference conversation calls.

``reward(example, run, tokenizer, cfg)`` scores one ``ToolRun`` from
week04's ``generate_with_tools``: ``cfg.correct`` times the kind's verifier
plus ``cfg.format`` times a small format check. What each rewards, and how a
policy could game it:

- arithmetic (``verify_arithmetic``): the last number of the text after the
  last tool output equals the answer as a number (week05's ``numeric_match``).
  Not checked: that the calculator was called, or called on the right
  expression (mental arithmetic counts). Gaming: none cheap; only the last
  number counts, so listing many numbers does not help.
- facts (``verify_facts``): the value appears as a whole word (numbers as
  numbers) in the final text and that text has at most ``cfg.max_answer_words``
  words. Gaming: within that limit, listing a few candidate values
  ("Velti or Zanu") still scores; the word cap makes it costly, not impossible.
- tool (``verify_tool``): some call names the expected tool (parsed by week04's
  ``parse_tool_call``) and its output has no "Error:"/"Traceback". Gaming: any
  harmless call to that tool ("calculator: 1") scores; it rewards the habit of
  calling, not answering.
- format (``format_ok``): the reply reached ``<|assistant_end|>`` and says
  something after its last tool output. Gaming: any short closing text.

Left out: learned reward models, partial credit, and penalties for length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from week04_modern_arch_tools import make_tool_dataset
from week04_modern_arch_tools.chat import parse_tool_call
from week04_modern_arch_tools.tooldata import ATTRIBUTES, make_world
from week05_eval.generative import normalize_number, numeric_match

RL_KINDS = ("arithmetic", "facts", "tool")
TOOL_OF_KIND = {"arithmetic": "calculator", "string": "python", "facts": "search"}
KNOWN_TOOLS = ("calculator", "python", "search")


@dataclass
class RewardConfig:
    correct: float = 1.0          # weight of the kind's verifier (0 or 1)
    format: float = 0.0           # weight of the format check (0 or 1); 0.1 is a small bonus
    max_answer_words: int = 12    # facts: longer final texts score 0 (anti-listing)

    def __post_init__(self):
        if self.correct < 0 or self.format < 0:
            raise ValueError(f"reward weights must be >= 0, got correct={self.correct}, "
                             f"format={self.format}")
        if self.max_answer_words < 1:
            raise ValueError(f"max_answer_words must be >= 1, got {self.max_answer_words}")


# ---------------------------------------------------------------- prompt sets


def _calls(conv: list[dict]) -> tuple[str, str, str]:
    """(question, reference tool call text, reference tool output) of a week04 conversation."""
    parts = conv[1]["content"]
    call = next(p["text"] for p in parts if p["type"] == "python")
    out = next(p["text"] for p in parts if p["type"] == "output")
    return conv[0]["content"], call, out


def _fact_answer(question: str, world: list[dict]) -> str:
    attr = next(a for a in ATTRIBUTES if a in question)
    country = max((c for c in world if c["name"] in question), key=lambda c: len(c["name"]))
    return str(country[attr])


def rl_prompts(kind: str, n: int, seed: int = 0, split: str = "train") -> list[dict]:
    """``n`` RL examples of ``kind`` from week04's ``split`` (see the module docstring)."""
    if kind not in RL_KINDS:
        raise ValueError(f"unknown RL kind {kind!r}; valid: {', '.join(RL_KINDS)}")
    if kind == "tool":
        sub = ("arithmetic", "string", "facts")
        per = [make_tool_dataset(k, (n + 2 - i) // 3, seed=seed, split=split)
               for i, k in enumerate(sub)]
        out = []
        for i in range(n):
            conv = per[i % 3][i // 3]
            out.append({"prompt": conv[:1], "answer": TOOL_OF_KIND[sub[i % 3]], "kind": kind})
        return out
    convs = make_tool_dataset(kind, n, seed=seed, split=split)
    world = make_world(seed) if kind == "facts" else None
    out = []
    for conv in convs:
        question, _, output = _calls(conv)
        answer = output.strip() if kind == "arithmetic" else _fact_answer(question, world)
        out.append({"prompt": conv[:1], "answer": answer, "kind": kind})
    return out


# ---------------------------------------------------------------- verifiers


def verify_arithmetic(answer_text: str, answer: str) -> float:
    return float(numeric_match(answer_text, answer))


def verify_facts(answer_text: str, answer: str, max_words: int = 12) -> float:
    words = re.findall(r"[A-Za-z0-9.,\-]+", answer_text)
    if not words or len(words) > max_words:
        return 0.0
    want = normalize_number(answer)
    for w in words:
        w = w.strip(".,")
        if w.lower() == answer.lower():
            return 1.0
        if want is not None and normalize_number(w) == want:
            return 1.0
    return 0.0


def verify_tool(run, tool: str) -> float:
    """1.0 if some call of ``run`` names ``tool`` and ran without an error."""
    for call in run.calls:
        try:
            name, _ = parse_tool_call(f"{call.name}: {call.input}")
        except ValueError:
            continue
        if name == tool and name in KNOWN_TOOLS and "Error:" not in call.output \
                and "Traceback" not in call.output:
            return 1.0
    return 0.0


def format_ok(run, tokenizer) -> float:
    return float(bool(run.finished) and bool(run.answer(tokenizer).strip()))


def correctness(example: dict, run, tokenizer, cfg: RewardConfig | None = None) -> float:
    """The kind's verifier alone (0 or 1): what exact match and pass@k count."""
    cfg = cfg or RewardConfig()
    kind = example.get("kind")
    if kind == "arithmetic":
        return verify_arithmetic(run.answer(tokenizer), example["answer"])
    if kind == "facts":
        return verify_facts(run.answer(tokenizer), example["answer"], cfg.max_answer_words)
    if kind == "tool":
        return verify_tool(run, example["answer"])
    raise ValueError(f"example kind {kind!r} has no verifier; valid: {', '.join(RL_KINDS)}")


def reward(example: dict, run, tokenizer, cfg: RewardConfig | None = None) -> float:
    """``cfg.correct * correctness + cfg.format * format_ok`` for one ``ToolRun``."""
    cfg = cfg or RewardConfig()
    r = cfg.correct * correctness(example, run, tokenizer, cfg)
    if cfg.format:
        r += cfg.format * format_ok(run, tokenizer)
    return r
