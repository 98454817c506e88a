"""Generative evaluation: the model writes an answer, we check it.

``evaluate_generative(model, tokenizer, task)`` prompts the model with each
example, decodes greedily (or samples), and scores the text by exact match or
numeric match. With ``tools={"calculator": Calculator(), ...}`` the same task
runs through week04's ``generate_with_tools``: the model may write a tool
call, the tool's output is spliced into its context, and it continues; the
result records how many calls it made. Running a task with and without tools
measures what the tools are worth.

Two prompt styles:

- ``"completion"`` (a base model): ``"Question: ...\\nAnswer:"``, the answer
  ends at the first newline;
- ``"chat"`` (a model that has seen week04's conversation format): the
  question as a user turn (``render_for_completion``), the answer is the
  assistant turn, which ends at ``<|assistant_end|>``. Tool use needs this
  style. Without tools, a model that writes a tool call has to write the
  tool's output itself; either way the answer scored is the text after the
  last ``<|output_end|>`` (``final_answer``, week04's ``ToolRun.answer``).

Answer extraction (``extract_number``) follows GSM8K's convention: the
number after ``####`` when present, else the last number in the text;
thousands separators, a ``$`` and a trailing period are dropped, ``-3`` is
negative but the ``-`` in ``5-3`` is not a sign, and ``7.0`` equals ``7``.

Left out: answer-checking by a judge model, pass@k with many samples, and
partial credit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import torch
from tqdm.auto import tqdm

from week05_eval.scoring import bos_of, greedy_generate, greedy_ids, model_block_size

MATCHES = ("exact", "numeric")
STYLES = ("completion", "chat")

# --------------------------------------------------------------------------- answers

_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])|"
                     r"(?<![\w.\d])-?\.\d+")
_GSM_MARK = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def normalize_number(text: str) -> str | None:
    """A canonical string for a number: ``"1,234.50"`` -> ``"1234.5"``, ``"7.0"`` -> ``"7"``.

    Returns None when ``text`` is not a number.
    """
    s = text.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    if not s:
        return None
    try:
        value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    return repr(float(value))


def extract_gsm8k_answer(text: str) -> str | None:
    """The number after ``####`` (GSM8K's answer line), normalised; None when missing."""
    m = _GSM_MARK.search(text)
    return normalize_number(m.group(1)) if m else None


def extract_number(text: str) -> str | None:
    """The ``####`` answer if present, else the last number in ``text``; None if there is none."""
    marked = extract_gsm8k_answer(text)
    if marked is not None:
        return marked
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


def exact_match(prediction: str, answer: str) -> bool:
    """Equal after stripping surrounding whitespace (case matters)."""
    return prediction.strip() == answer.strip()


def numeric_match(prediction: str, answer: str) -> bool:
    """The number extracted from ``prediction`` equals ``answer`` as a number."""
    want = normalize_number(answer)
    if want is None:
        want = extract_number(answer)
    got = extract_number(prediction)
    return got is not None and want is not None and got == want


# --------------------------------------------------------------------------- data


@dataclass
class GenExample:
    question: str
    answer: str                    # the reference answer (a number for numeric match)
    match: str = "exact"           # exact | numeric
    id: str = ""

    def __post_init__(self):
        if self.match not in MATCHES:
            raise ValueError(f"match must be one of {MATCHES}, got {self.match!r}")


@dataclass
class GenTask:
    name: str
    examples: list[GenExample]
    fewshot_pool: list[GenExample] = field(default_factory=list)


@dataclass
class GenResult:
    task: str
    n: int
    accuracy: float
    tools: bool
    tool_calls: int = 0
    predictions: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        return {"task": self.task, "n": self.n, "accuracy": self.accuracy, "tools": self.tools,
                "tool_calls": self.tool_calls}


# --------------------------------------------------------------------------- prompts


def completion_prompt(example: GenExample, shots: Sequence[GenExample] = ()) -> str:
    """``"Question: q1\\nAnswer: a1\\n\\n...Question: q\\nAnswer:"``."""
    parts = [f"Question: {s.question}\nAnswer: {s.answer}" for s in shots]
    parts.append(f"Question: {example.question}\nAnswer:")
    return "\n\n".join(parts)


def chat_prompt_ids(tokenizer, question: str) -> list[int]:
    """``<|bos|><|user_start|>question<|user_end|><|assistant_start|>``: week04's
    ``render_for_completion`` for one user message."""
    from week04_modern_arch_tools import render_for_completion
    try:
        return render_for_completion([{"role": "user", "content": question}], tokenizer)
    except (ValueError, KeyError) as e:
        raise ValueError(f"the chat prompt style needs week02's chat special tokens ({e}); "
                         "use style='completion'") from None


def final_answer(tokenizer, ids: Sequence[int]) -> str:
    """The assistant's own text after its last ``<|output_end|>``, special tokens dropped
    (what week04's ``ToolRun.answer`` returns), so answers with and without tools compare."""
    specials = getattr(tokenizer, "special_tokens", None) or {}
    end = specials.get("<|output_end|>")
    ids = list(ids)
    if end is not None and end in ids:
        ids = ids[len(ids) - ids[::-1].index(end):]
    drop = set(specials.values())
    return tokenizer.decode([i for i in ids if i not in drop])


def score(example: GenExample, prediction: str) -> bool:
    return (numeric_match(prediction, example.answer) if example.match == "numeric"
            else exact_match(prediction, example.answer))


# --------------------------------------------------------------------------- evaluation


def evaluate_generative(model, tokenizer, task: GenTask, style: str = "completion",
                        tools: dict | None = None, num_fewshot: int = 0,
                        max_new_tokens: int = 32, temperature: float = 0.0,
                        top_k: int | None = None, seed: int = 0, limit: int | None = None,
                        batch_size: int = 16, progress: bool = False) -> GenResult:
    """Generate an answer for each example and score it (see the module docstring)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if tools and style != "chat":
        raise ValueError("tool use needs style='chat': tool calls live inside assistant turns")
    if num_fewshot and style == "chat":
        raise ValueError("few-shot prompts are for style='completion'")
    if num_fewshot > len(task.fewshot_pool):
        raise ValueError(f"asked for {num_fewshot} shots, the pool of {task.name!r} has "
                         f"{len(task.fewshot_pool)}")
    examples = task.examples[:limit] if limit else task.examples
    if not examples:
        raise ValueError(f"task {task.name!r} has no examples")
    gen = torch.Generator().manual_seed(seed)
    preds, calls = [], 0
    if tools:
        from week04_modern_arch_tools import generate_with_tools
        block = model_block_size(model)
        for i in tqdm(range(0, len(examples), batch_size), disable=not progress, desc=task.name,
                      unit="batch"):
            chunk = examples[i:i + batch_size]
            # a prompt that leaves no room to answer cannot be answered: scored as wrong
            fits = [len(chat_prompt_ids(tokenizer, ex.question)) < block for ex in chunk]
            runs = iter(generate_with_tools(
                model, tokenizer, [ex.question for ex, ok in zip(chunk, fits) if ok],
                tools=tools, max_new_tokens=max_new_tokens, temperature=temperature,
                top_k=top_k, seed=seed + i) if any(fits) else [])
            for ok in fits:
                run = next(runs) if ok else None
                preds.append(run.answer(tokenizer) if run else "")
                calls += len(run.calls) if run else 0
    else:
        for ex in tqdm(examples, disable=not progress, desc=task.name, unit="ex"):
            if style == "completion":
                shots = task.fewshot_pool[:num_fewshot]
                ids = bos_of(tokenizer) + tokenizer.encode(completion_prompt(ex, shots))
                text = greedy_generate(model, tokenizer, ids, max_new_tokens=max_new_tokens,
                                       stop=["\n"], temperature=temperature, top_k=top_k,
                                       generator=gen)
            else:
                ids = chat_prompt_ids(tokenizer, ex.question)
                sp = tokenizer.special_tokens
                new = greedy_ids(model, ids, max_new_tokens=max_new_tokens,
                                 stop_ids=[sp["<|assistant_end|>"], sp["<|bos|>"]],
                                 temperature=temperature, top_k=top_k, generator=gen)
                text = final_answer(tokenizer, new)
            preds.append(text)
    hits = sum(score(ex, p) for ex, p in zip(examples, preds))
    return GenResult(task=task.name, n=len(examples), accuracy=hits / len(examples),
                     tools=bool(tools), tool_calls=calls, predictions=preds)
