"""Real SFT data by name through ``datasets``: SmolTalk and GSM8K with calculator calls.

``load_smoltalk`` (``HuggingFaceTB/smol-smoltalk``, column ``messages``) and
``load_gsm8k_sft`` (``openai/gsm8k`` "main": each ``<<expr=result>>`` becomes a
calculator call whose output is week04's real ``Calculator``'s, ``#### 72``
becomes "The answer is 72."), both through week05's ``load_rows`` (the hub by
name, or local files in the same schema). A broken row is skipped and a warning
counts them (``on_bad="error"`` raises, naming the row); ``check_messages`` and
``convert_rows`` are the checks ``prefs`` shares for UltraFeedback.

Left out: the other SmolTalk subsets and GSM8K's "socratic" config.
"""

from __future__ import annotations

import re
import warnings

from week04_modern_arch_tools import Calculator

_CALC = Calculator()


def _turn(question: str, parts) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": parts}]


# ---------------------------------------------------------------- real data by name

SMOLTALK = "HuggingFaceTB/smol-smoltalk"


def check_messages(messages, where: str) -> list[dict]:
    """A copy of ``messages`` checked for week04's format with string contents: roles
    user, assistant, ... (a system message first at most), ending with the assistant;
    ValueError naming ``where`` (e.g. "SmolTalk row 3") otherwise."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: messages must be a non-empty list")
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    start = 1 if roles[0] == "system" else 0
    want = ["user" if j % 2 == 0 else "assistant" for j in range(len(roles) - start)]
    if roles[start:] != want or not want or want[-1] != "assistant":
        raise ValueError(f"{where}: roles {roles} must be user, assistant, ... (a system "
                         "message first at most), ending with the assistant")
    if not all(isinstance(m.get("content"), str) and m["content"].strip() for m in messages):
        raise ValueError(f"{where}: every content must be a non-empty string")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def load_smoltalk(split: str = "train", data_files=None, limit: int | None = None,
                  on_bad: str = "skip", cache_dir: str | None = None) -> list[list[dict]]:
    """SmolTalk conversations (column ``messages``); broken rows are skipped with a warning
    counting them (``on_bad="error"`` raises on the first, naming it)."""
    from week05_eval.tasks import load_rows
    return convert_rows(load_rows(SMOLTALK, None, split, data_files, cache_dir),
                        lambda r, i: check_messages(r.get("messages"), f"SmolTalk row {i}"),
                        limit, on_bad, "SmolTalk")


def convert_rows(rows, fn, limit: int | None, on_bad: str, what: str) -> list:
    """``fn(row, i)`` of each row (at most ``limit``); a ValueError skips the row
    (``on_bad="skip"``: a warning counts them) or propagates (``"error"``)."""
    if on_bad not in ("error", "skip"):
        raise ValueError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
    out, skipped = [], 0
    for i, row in enumerate(rows):
        if limit and len(out) >= limit:
            break
        try:
            out.append(fn(row, i))
        except ValueError:
            if on_bad == "error":
                raise
            skipped += 1
    if skipped:
        warnings.warn(f"{what}: skipped {skipped} broken rows", stacklevel=3)
    return out


_ANNOTATION = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
_FINAL = re.compile(r"\n?####\s*(.+?)\s*$", re.S)


def _agrees(calc: str, annotated: str) -> bool:
    try:
        a, b = float(calc), float(annotated.replace(",", "").lstrip("$"))
    except ValueError:
        return False
    decimals = len(annotated.split(".")[1]) if "." in annotated else 0
    return abs(a - b) <= 0.5 * 10 ** -decimals + 1e-9 * max(1.0, abs(b))


def gsm8k_conversation(row: dict, i: int = 0, stats: dict | None = None) -> list[dict]:
    """One GSM8K row as a conversation: each ``<<expr=result>>`` a calculator call whose
    output is ``Calculator().run(expr)`` (the annotated result when the calculator cannot
    evaluate it: ``stats["fallback"]`` counts them, ``stats["disagree"]`` the evaluated
    calls whose value is not the annotation rounded); ``#### 72`` -> "The answer is 72."."""
    if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
        raise ValueError(f"GSM8K row {i}: needs string columns question and answer")
    m = _FINAL.search(row["answer"])
    if not m:
        raise ValueError(f"GSM8K row {i}: the answer has no '#### <number>' line")
    body, parts, pos = row["answer"][:m.start()], [], 0
    stats = stats if stats is not None else {}
    for a in _ANNOTATION.finditer(body):
        expr, annotated = a.group(1).strip(), a.group(2).strip()
        output = _CALC.run(expr)
        stats["calls"] = stats.get("calls", 0) + 1
        if output.startswith("Error"):
            output, stats["fallback"] = annotated, stats.get("fallback", 0) + 1
        elif not _agrees(output, annotated):
            stats["disagree"] = stats.get("disagree", 0) + 1
        if body[pos:a.start()]:
            parts.append({"type": "text", "text": body[pos:a.start()]})
        parts += [{"type": "python", "text": f"calculator: {expr}"},
                  {"type": "output", "text": output}]
        pos = a.end()
    tail = body[pos:].rstrip()
    parts.append({"type": "text", "text": (tail + "\n" if tail else "")
                  + f"The answer is {m.group(1)}."})
    return _turn(row["question"], parts)


def load_gsm8k_sft(split: str = "train", data_files=None, limit: int | None = None,
                   on_bad: str = "skip", cache_dir: str | None = None,
                   stats: dict | None = None) -> list[list[dict]]:
    """``openai/gsm8k`` "main" as tool-use conversations (``gsm8k_conversation``); warns
    with the counts of calculator fallbacks and disagreements, fills ``stats`` if given."""
    from week05_eval.tasks import load_rows
    stats = stats if stats is not None else {}
    rows = load_rows("openai/gsm8k", "main", split, data_files, cache_dir)
    out = convert_rows(rows, lambda r, i: gsm8k_conversation(r, i, stats), limit, on_bad, "GSM8K")
    if stats.get("fallback") or stats.get("disagree"):
        warnings.warn(f"GSM8K: of {stats['calls']} calculator calls, {stats.get('fallback', 0)} "
                      f"used the annotated result (the calculator could not evaluate them) and "
                      f"{stats.get('disagree', 0)} disagreed with it", stacklevel=2)
    return out
