"""Task loaders: the real benchmarks through ``datasets``, and offline tasks that always work.

Real benchmarks (``datasets.load_dataset`` with the hub names and configs):

=============  ==========================  ==========================================
loader         hub dataset (config)        prompt
=============  ==========================  ==========================================
load_arc       allenai/ai2_arc             ``Question: q\\nAnswer:`` / `` choice``
               (ARC-Easy, ARC-Challenge)
load_mmlu      cais/mmlu (all or subject)  question, lettered choices, ``Answer:`` / `` A``
load_hellaswag Rowan/hellaswag             ``activity: ctx`` / `` ending``
load_gsm8k     openai/gsm8k (main)         generative; gold = the number after ``####``
=============  ==========================  ==========================================

Every loader takes ``data_files=`` (a path, a list, or ``{split: path}``) to
read local parquet / JSON lines / CSV files in the same schema instead of
the hub; the tests write such files. Nothing here downloads unless you call a
loader without ``data_files`` on a machine that can reach the hub.

Offline tasks, built from data every machine has:

- ``pydocs_cloze``: a word in a held-out pydocs document, against three
  distractor words from the same documents (4 choices);
- ``pydocs_next_line``: the next line of a held-out document, against three
  lines from other documents (4 choices);
- ``tool_task(kind)``: week04's synthetic arithmetic / string / fact
  conversations (``make_tool_dataset(kind, split="test")``) as generative
  questions with exact or numeric answers, scored with and without tools.

Left out: the other lm-eval tasks (use ``NanochatLM`` with lm-eval for them)
and dataset versions pinned by revision.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

from week05_eval.generative import GenExample, GenTask, extract_gsm8k_answer
from week05_eval.multiple_choice import MCExample, MCTask

# --------------------------------------------------------------------------- datasets plumbing

HUB = {
    "arc": ("allenai/ai2_arc", ("ARC-Easy", "ARC-Challenge")),
    "mmlu": ("cais/mmlu", None),
    "hellaswag": ("Rowan/hellaswag", None),
    "gsm8k": ("openai/gsm8k", ("main", "socratic")),
}
_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


def _builder_for(files) -> str:
    first = files
    while isinstance(first, (list, tuple, dict)):
        first = next(iter(first.values() if isinstance(first, dict) else first))
    suffix = Path(str(first)).suffix.lower()
    if suffix not in _BUILDERS:
        raise ValueError(f"data_files {first!r}: unknown file type {suffix!r}; valid: "
                         f"{', '.join(_BUILDERS)}")
    return _BUILDERS[suffix]


def load_rows(path: str, name: str | None, split: str, data_files=None,
              cache_dir: str | None = None) -> list[dict]:
    """Rows of ``split`` as dicts: from the hub (``path``, ``name``) or from ``data_files``.

    A ``data_files`` that is not a dict is taken to hold ``split``.
    """
    try:
        import datasets
    except ImportError:
        raise ImportError("the benchmark loaders need `datasets`: pip install datasets pyarrow") \
            from None
    if data_files is not None:
        files = data_files if isinstance(data_files, dict) else {split: data_files}
        if split not in files:
            raise ValueError(f"data_files has splits {sorted(files)}, not {split!r}")
        ds = datasets.load_dataset(_builder_for(files), data_files={split: files[split]},
                                   split=split, cache_dir=cache_dir)
    else:
        ds = datasets.load_dataset(path, name, split=split, cache_dir=cache_dir)
    return [dict(r) for r in ds]


def _limit(rows: list, limit: int | None) -> list:
    return rows[:limit] if limit else rows


def _need(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise KeyError(f"{where}: rows lack the columns {missing}; they have {sorted(row)}")


# --------------------------------------------------------------------------- ARC


def arc_example(row: dict) -> MCExample:
    _need(row, ("question", "choices", "answerKey"), "ARC")
    labels = list(row["choices"]["label"])
    if row["answerKey"] not in labels:
        raise ValueError(f"ARC row {row.get('id')!r}: answerKey {row['answerKey']!r} is not one of "
                         f"the labels {labels}")
    return MCExample(context=f"Question: {row['question']}\nAnswer:",
                     choices=[" " + t for t in row["choices"]["text"]],
                     gold=labels.index(row["answerKey"]), id=str(row.get("id", "")))


def load_arc(subset: str = "ARC-Easy", split: str = "test", data_files=None,
             fewshot_split: str | None = None, limit: int | None = None,
             cache_dir: str | None = None) -> MCTask:
    """ARC-Easy or ARC-Challenge (``allenai/ai2_arc``) as a multiple-choice task."""
    if subset not in HUB["arc"][1]:
        raise ValueError(f"unknown ARC subset {subset!r}; valid: {HUB['arc'][1]}")
    rows = _limit(load_rows(HUB["arc"][0], subset, split, data_files, cache_dir), limit)
    pool = ([arc_example(r) for r in load_rows(HUB["arc"][0], subset, fewshot_split, data_files,
                                               cache_dir)] if fewshot_split else [])
    name = "arc_easy" if subset == "ARC-Easy" else "arc_challenge"
    return MCTask(name, [arc_example(r) for r in rows], pool)


# --------------------------------------------------------------------------- MMLU

LETTERS = "ABCDEFGHIJ"


def mmlu_example(row: dict) -> MCExample:
    _need(row, ("question", "choices", "answer"), "MMLU")
    choices = list(row["choices"])
    lines = [row["question"].strip()] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    return MCExample(context="\n".join(lines) + "\nAnswer:",
                     choices=[f" {LETTERS[i]}" for i in range(len(choices))],
                     gold=int(row["answer"]), id=str(row.get("subject", "")))


def load_mmlu(subject: str = "all", split: str = "test", data_files=None,
              fewshot_split: str | None = None, limit: int | None = None,
              cache_dir: str | None = None) -> MCTask:
    """MMLU (``cais/mmlu``, config ``subject``) with lettered choices, scored on the letter."""
    rows = _limit(load_rows(HUB["mmlu"][0], subject, split, data_files, cache_dir), limit)
    pool = ([mmlu_example(r) for r in load_rows(HUB["mmlu"][0], subject, fewshot_split,
                                                data_files, cache_dir)] if fewshot_split else [])
    topic = subject.replace("_", " ") if subject != "all" else "many subjects"
    return MCTask(f"mmlu_{subject}", [mmlu_example(r) for r in rows], pool,
                  description=f"The following are multiple choice questions (with answers) about "
                              f"{topic}.\n\n")


# --------------------------------------------------------------------------- HellaSwag


def hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow artefacts out: `` [title]`` becomes ". ", other ``[tags]`` go."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_example(row: dict) -> MCExample:
    _need(row, ("activity_label", "ctx_a", "ctx_b", "endings", "label"), "HellaSwag")
    if row["label"] in ("", None):
        raise ValueError(f"HellaSwag row {row.get('ind')!r} has no label (the test split is "
                         "unlabelled): use split='validation'")
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    return MCExample(context=hellaswag_clean(row["activity_label"] + ": " + ctx),
                     choices=[" " + hellaswag_clean(e) for e in row["endings"]],
                     gold=int(row["label"]), id=str(row.get("ind", "")))


def load_hellaswag(split: str = "validation", data_files=None, fewshot_split: str | None = None,
                   limit: int | None = None, cache_dir: str | None = None) -> MCTask:
    """HellaSwag (``Rowan/hellaswag``): pick the ending of a described activity."""
    rows = _limit(load_rows(HUB["hellaswag"][0], None, split, data_files, cache_dir), limit)
    pool = ([hellaswag_example(r) for r in load_rows(HUB["hellaswag"][0], None, fewshot_split,
                                                     data_files, cache_dir)]
            if fewshot_split else [])
    return MCTask("hellaswag", [hellaswag_example(r) for r in rows], pool)


# --------------------------------------------------------------------------- GSM8K


def gsm8k_example(row: dict, i: int = 0) -> GenExample:
    _need(row, ("question", "answer"), "GSM8K")
    gold = extract_gsm8k_answer(row["answer"])
    if gold is None:
        raise ValueError(f"GSM8K row {i}: the answer has no '#### <number>' line: "
                         f"{row['answer'][-80:]!r}")
    return GenExample(question=row["question"], answer=gold, match="numeric", id=str(i))


def load_gsm8k(split: str = "test", config: str = "main", data_files=None,
               fewshot_split: str | None = None, limit: int | None = None,
               cache_dir: str | None = None) -> GenTask:
    """GSM8K (``openai/gsm8k``): grade-school word problems, numeric answer after ``####``."""
    if config not in HUB["gsm8k"][1]:
        raise ValueError(f"unknown GSM8K config {config!r}; valid: {HUB['gsm8k'][1]}")
    rows = _limit(load_rows(HUB["gsm8k"][0], config, split, data_files, cache_dir), limit)
    pool = []
    if fewshot_split:
        for i, r in enumerate(load_rows(HUB["gsm8k"][0], config, fewshot_split, data_files,
                                        cache_dir)):
            ex = gsm8k_example(r, i)
            ex.answer = r["answer"].replace("\n", " ")  # shots show the worked solution
            pool.append(ex)
    return GenTask("gsm8k", [gsm8k_example(r, i) for i, r in enumerate(rows)], pool)


# --------------------------------------------------------------------------- offline: pydocs

_WORD = re.compile(r"(?<= )[A-Za-z]{4,}(?=[ .,;:])")


def _val_docs(corpus=None):
    from shared import load_corpus
    corpus = corpus or load_corpus("pydocs")
    docs = corpus.val_docs
    if not docs:
        raise ValueError(f"corpus {corpus.name!r} has no validation documents to build tasks from")
    return docs


def pydocs_cloze(n: int = 200, seed: int = 0, corpus=None, context_chars: int = 300,
                 window: int = 20) -> MCTask:
    """Fill in a word of a held-out pydocs document (4 choices, chance 25%).

    The blanked word has 4+ letters and follows a space; the three distractors
    are other such words from the validation documents whose frequency rank is
    within ``window`` of the answer's, so a model that only knows how common
    words are (``UnigramLM``) stays near chance and the context decides.
    """
    docs = _val_docs(corpus)
    rng = random.Random(seed)
    counts = Counter(m.group(0) for d in docs for m in _WORD.finditer(d.text))
    by_rank = sorted(counts, key=lambda w: (-counts[w], w))      # most frequent first
    rank = {w: i for i, w in enumerate(by_rank)}
    if len(by_rank) < 4:
        raise ValueError("not enough distinct words in the validation documents for a cloze task")
    examples = []
    attempts = 0
    while len(examples) < n and attempts < 50 * n:
        attempts += 1
        doc = rng.choice(docs)
        spots = [m for m in _WORD.finditer(doc.text) if m.start() >= 40]
        if not spots:
            continue
        m = rng.choice(spots)
        word = m.group(0)
        context = doc.text[max(0, m.start() - context_chars):m.start()].rstrip(" ")
        # distractors about as frequent as the answer, so word frequency alone cannot tell
        r = rank[word]
        lo = max(0, min(r - window, len(by_rank) - 2 * window - 1))
        near = [w for w in by_rank[lo:lo + 2 * window + 1] if w.lower() != word.lower()]
        if len(near) < 3:
            continue
        distractors = rng.sample(near, 3)
        choices = [" " + w for w in [word, *distractors]]
        rng.shuffle(choices)
        examples.append(MCExample(context, choices, choices.index(" " + word),
                                  id=f"{doc.name}@{m.start()}"))
    return MCTask("pydocs_cloze", examples)


def pydocs_next_line(n: int = 200, seed: int = 0, corpus=None, context_lines: int = 4) -> MCTask:
    """Pick the true next line of a held-out pydocs document among 4 (chance 25%).

    Distractors are lines of 20+ characters from other documents.
    """
    docs = _val_docs(corpus)
    rng = random.Random(seed)
    lines_of = {d.name: [ln for ln in d.text.split("\n") if ln.strip()] for d in docs}
    pool = [(name, ln) for name, lines in lines_of.items() for ln in lines if len(ln.strip()) >= 20]
    usable = [d for d in docs if len(lines_of[d.name]) >= 3]
    if not usable or len({ln for _, ln in pool}) < 4:
        raise ValueError("not enough multi-line validation documents for a next-line task: it "
                         "needs at least 4 distinct lines of 20+ characters (one answer, three "
                         "distractors from other documents)")
    examples = []
    attempts = 0
    while len(examples) < n and attempts < 50 * n:
        attempts += 1
        doc = rng.choice(usable)
        lines = lines_of[doc.name]
        i = rng.randrange(1, len(lines))
        if len(lines[i].strip()) < 20:
            continue
        context = "\n".join(lines[max(0, i - context_lines):i]) + "\n"
        others, tries = set(), 0
        while len(others) < 3 and tries < 100 * len(pool):  # bounded: repeated lines
            tries += 1
            name, ln = rng.choice(pool)
            if name != doc.name and ln != lines[i]:
                others.add(ln)
        if len(others) < 3:  # too few distinct distractors for this line elsewhere
            continue
        choices = [lines[i], *sorted(others)]
        rng.shuffle(choices)
        examples.append(MCExample(context, choices, choices.index(lines[i]),
                                  id=f"{doc.name}#{i}"))
    return MCTask("pydocs_next_line", examples)


# --------------------------------------------------------------------------- offline: week04 tools

TOOL_KINDS = ("arithmetic", "string", "facts")


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def tool_task(kind: str, n: int = 50, seed: int = 0, split: str = "test") -> GenTask:
    """week04's synthetic ``kind`` conversations as questions with reference answers.

    The question is the first user turn; the reference is the text of the last
    assistant turn (tool calls and outputs left out). Arithmetic is scored by
    numeric match, strings and facts by exact match.
    """
    if kind not in TOOL_KINDS:
        raise ValueError(f"unknown tool task {kind!r}; valid: {TOOL_KINDS}")
    from week04_modern_arch_tools import make_tool_dataset
    convs = make_tool_dataset(kind, n, seed=seed, split=split)
    examples = []
    for i, conv in enumerate(convs):
        messages = conv["messages"] if isinstance(conv, dict) else conv
        user = next(m for m in messages if m["role"] == "user")
        assistant = [m for m in messages if m["role"] == "assistant"][-1]
        content = assistant["content"]
        answer = _text_of(content if isinstance(content, str) else
                          [p for p in content if p.get("type") == "text"][-1:])
        examples.append(GenExample(question=_text_of(user["content"]), answer=answer.strip(),
                                   match="numeric" if kind == "arithmetic" else "exact",
                                   id=f"{kind}-{i}"))
    return GenTask(f"tool_{kind}", examples)
