"""Task streams: ordered tasks with train/test examples and a metric, and how to score them.

An example is ``{"ids": [...], "mask": [...]}``: token ids and a mask that is
1 on the tokens the model is trained on and scored on (the assistant's reply
in a chat; every token but the first in a plain text window). A ``Task`` has
train and test examples and a metric:

- ``"exact_match"`` (higher is better): an example counts when *every*
  masked token is the model's argmax given the gold prefix (teacher forcing).
  For a greedy decoder this is the same as generating the reply and comparing
  it exactly: if all reply tokens are argmaxes under teacher forcing, greedy
  decoding produces exactly them, and the first wrong argmax is where greedy
  decoding leaves the reference. With tools it stays the same: the masked-out
  tool output in the prefix is what the (deterministic) tool returns for the
  exact call the model made. One batched forward pass instead of a decode loop;
  ``tests/test_tasks.py`` checks it against ``Llama.generate``.
- ``"bpb"`` (lower is better): bits per byte of the masked tokens,
  ``week02_bpe.bits_per_byte`` (tokenizer-independent).

Built-in streams:

- ``skills``: week04's synthetic tool-use conversations (``make_tool_dataset``:
  arithmetic with the calculator, string/list tasks with the REPL, facts of
  the generated world with search) rendered by week04's
  ``render_conversation``, then ``new_facts``: a new attribute of the same
  world's countries (a national animal) that the search tool does not know,
  learned without tools and asked about in the same words at test time (it
  is knowledge, not a skill). ``skills-facts`` (``variant="facts"``) asks
  the world's capitals, currencies, languages and the new animals without
  tools, with one-word answers: small enough for a tiny CPU model.
- ``domains``: the pydocs corpus split into topic groups by module family
  (``DOMAIN_GROUPS``), text windows, measured in bpb.
- a custom stream from files (``load_stream``): a folder of ``<task>.jsonl``
  files, in name order, each line ``{"prompt", "answer"}``,
  ``{"messages": [...]}`` or ``{"text"}``, with an optional ``"split": "test"``
  (otherwise a stable 20% hash split).

Left out: multi-turn generative evaluation with sampling, and task streams
whose tasks use different metrics (a stream has one metric).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from shared import pad_batch
from week03_training import token_cross_entropy

METRICS = ("exact_match", "bpb")

# ---------------------------------------------------------------- tasks and streams


@dataclass
class Task:
    name: str
    train: list[dict]
    test: list[dict]
    metric: str = "exact_match"

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"task {self.name!r}: metric must be one of {METRICS}, "
                             f"got {self.metric!r}")
        if not self.train or not self.test:
            raise ValueError(f"task {self.name!r} needs train and test examples "
                             f"(got {len(self.train)} train, {len(self.test)} test)")
        for ex in self.train[:3] + self.test[:3]:
            if len(ex.get("ids", ())) != len(ex.get("mask", ())) or not any(ex["mask"][1:]):
                raise ValueError(f"task {self.name!r}: an example needs 'ids' and 'mask' of the same "
                                 "length and at least one masked token after the first")


@dataclass
class Stream:
    name: str
    tasks: list[Task]
    tokenizer: object = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.tasks:
            raise ValueError(f"stream {self.name!r} has no tasks")
        metrics = {t.metric for t in self.tasks}
        if len(metrics) != 1:
            raise ValueError(f"stream {self.name!r} mixes metrics {sorted(metrics)}; one per stream")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"stream {self.name!r} has duplicate task names: {names}")

    @property
    def metric(self) -> str:
        return self.tasks[0].metric

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "exact_match"

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


def prompt_ids(example: dict, max_tokens: int = 64) -> list[int]:
    """The tokens before the first masked one (the question), or the first ``max_tokens``."""
    mask = example["mask"]
    first = next((i for i, m in enumerate(mask) if m), len(mask))
    ids = example["ids"][:first] if first > 1 else example["ids"]
    return ids[:max_tokens]


# ---------------------------------------------------------------- batching and scoring


def collate(examples: list[dict], max_len: int | None = None, device=None):
    """(x, y) of shape (B, T): ``shared.pad_batch`` over the examples' ids and masks (right
    padding; y is ``IGNORE_INDEX`` where the token is not scored)."""
    if not examples:
        raise ValueError("collate needs at least one example")
    return pad_batch([ex["ids"] for ex in examples], [ex["mask"] for ex in examples],
                     max_len=max_len, device=device)


def lm_loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the scored positions (week03's ``token_cross_entropy``)."""
    return token_cross_entropy(model(x), y)  # logits (B, T, V)


@torch.no_grad()
def score_examples(model, examples: list[dict], metric: str, batch_size: int = 64,
                   token_bytes: torch.Tensor | None = None, max_len: int | None = None,
                   adapter_names: list | None = None) -> float:
    """Exact-match accuracy or bits per byte of ``model`` on ``examples``.

    ``adapter_names`` (one per example) runs each row with its own week06
    adapter (``None``: the base), as a mixed batch.
    """
    from week06_lora import mixed_batch

    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if metric == "bpb" and token_bytes is None:
        raise ValueError("the bpb metric needs token_bytes (week02_bpe.token_bytes(tokenizer))")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hits, nats, nbytes = 0, 0.0, 0
    try:
        for s in range(0, len(examples), batch_size):
            chunk = examples[s:s + batch_size]
            x, y = collate(chunk, max_len, device)
            if adapter_names is not None:
                with mixed_batch(model, list(adapter_names[s:s + batch_size])):
                    logits = model(x)
            else:
                logits = model(x)  # (B, T, V)
            scored = y >= 0
            if metric == "exact_match":
                right = (logits.argmax(-1) == y) | ~scored  # (B, T)
                hits += int(right.all(dim=1).sum())
            else:
                loss = F.cross_entropy(logits.float().transpose(1, 2), y.clamp(min=0),
                                       reduction="none")  # (B, T)
                nats += float(loss[scored].double().sum())
                nbytes += int(token_bytes.to(device)[y[scored]].sum())
    finally:
        model.train(was_training)
    if metric == "exact_match":
        return hits / len(examples)
    if nbytes == 0:
        raise ValueError("the scored tokens cover 0 bytes: bits per byte is undefined")
    return nats / (math.log(2) * nbytes)


# ---------------------------------------------------------------- chat examples


def chat_example(tokenizer, messages: list[dict], max_tokens: int | None = None) -> dict:
    """A conversation rendered with week04's ``render_conversation`` (mask = assistant tokens)."""
    from week04_modern_arch_tools import render_conversation

    ids, mask = render_conversation(messages, tokenizer)
    if max_tokens is not None:
        ids, mask = ids[:max_tokens], mask[:max_tokens]
    return {"ids": list(ids), "mask": list(mask)}


def qa_example(tokenizer, prompt: str, answer: str) -> dict:
    return chat_example(tokenizer, [{"role": "user", "content": prompt},
                                    {"role": "assistant", "content": answer}])


def text_example(tokenizer, text: str, max_tokens: int | None = None) -> dict:
    ids = tokenizer.encode(text)[:max_tokens]
    return {"ids": ids, "mask": [0] + [1] * (len(ids) - 1)}


# ---------------------------------------------------------------- the skills stream

_ANIMALS = ("lynx", "heron", "otter", "falcon", "badger", "ibis", "marten", "tapir", "gecko",
            "puffin", "vole", "egret")
_WORLD_QUESTIONS = {"capital": "What is the capital of {n}?",
                    "currency": "What currency does {n} use?",
                    "language": "What language is spoken in {n}?",
                    "animal": "What is the national animal of {n}?"}


def world_facts(attribute: str, seed: int = 0, n: int = 40,
                sentence: bool = False) -> list[tuple[str, str]]:
    """(question, answer) pairs about week04's generated world, answered without tools.

    ``attribute`` is one of the world's (capital, currency, language) or
    ``"animal"``, a national animal the world's fact store does not know (new
    facts). ``sentence=True`` answers in a full sentence, else with the value.
    """
    from week04_modern_arch_tools.tooldata import make_world  # not exported by week04's __init__

    if attribute not in _WORLD_QUESTIONS:
        raise ValueError(f"unknown world attribute {attribute!r}; valid: {list(_WORLD_QUESTIONS)}")
    rng = random.Random(f"new-facts-{seed}")
    out = []
    for country in make_world(seed)[:n]:
        value = rng.choice(_ANIMALS) if attribute == "animal" else str(country[attribute])
        answer = value
        if sentence:
            answer = (f"The national animal of {country['name']} is the {value}."
                      if attribute == "animal" else f"The {attribute} of {country['name']} is {value}.")
        out.append((_WORLD_QUESTIONS[attribute].format(n=country["name"]), answer))
    return out


SKILLS_VARIANTS = {
    # week04's tool-use tasks, then new facts learned without tools (the issue's stream)
    "tools": ("arithmetic", "string", "facts", "new_facts"),
    # knowledge only, short answers: a stream a tiny CPU model learns in a minute
    "facts": ("capital", "currency", "language", "new_facts"),
}


def make_skills_stream(tokenizer, n_train: int = 200, n_test: int = 50, seed: int = 0,
                       n_facts: int = 40, variant: str = "tools", kinds=None,
                       max_tokens: int | None = None) -> Stream:
    """The skills stream (see the module docstring); ``kinds`` picks and orders its tasks.

    ``variant="tools"``: arithmetic / string / facts with week04's tools, then
    ``new_facts`` (national animals, full-sentence answers, no tools).
    ``variant="facts"``: capital / currency / language / new_facts of the same
    world, asked without tools with one-word answers: the same kind of stream
    at a size a tiny model learns in seconds (knowledge tasks are tested on
    the facts they taught).
    """
    from week04_modern_arch_tools import make_tool_dataset

    tool_kinds = ("arithmetic", "string", "facts")  # make_tool_dataset's kinds

    if kinds is None:
        if variant not in SKILLS_VARIANTS:
            raise ValueError(f"unknown skills variant {variant!r}; valid: {list(SKILLS_VARIANTS)}")
        kinds = SKILLS_VARIANTS[variant]
    tasks = []
    for kind in kinds:
        if kind == "new_facts" or kind in _WORLD_QUESTIONS:
            attr = "animal" if kind == "new_facts" else kind
            exs = [qa_example(tokenizer, q, a)
                   for q, a in world_facts(attr, seed, n_facts, sentence=variant == "tools")]
            tasks.append(Task(kind, exs, exs))  # knowledge: asked as it was taught
            continue
        if kind not in tool_kinds:
            raise ValueError(f"unknown skills task {kind!r}; valid: "
                             f"{(*tool_kinds, *_WORLD_QUESTIONS, 'new_facts')}")
        train = [chat_example(tokenizer, c, max_tokens)
                 for c in make_tool_dataset(kind, n_train, seed, "train")]
        test = [chat_example(tokenizer, c, max_tokens)
                for c in make_tool_dataset(kind, n_test, seed, "test")]
        tasks.append(Task(kind, train, test))
    return Stream("skills" if variant == "tools" else f"skills-{variant}", tasks, tokenizer,
                  {"seed": seed, "n_train": n_train, "n_test": n_test, "variant": variant})


# ---------------------------------------------------------------- the domains stream

DOMAIN_GROUPS: dict[str, tuple[str, ...]] = {
    "language": ("topic",),
    "web_mail": ("email", "http", "urllib", "smtplib", "imaplib", "xml", "xmlrpc", "wsgiref",
                 "nntplib", "ftplib", "cgi", "html", "mailbox", "poplib"),
    "concurrency": ("asyncio", "concurrent", "threading", "multiprocessing", "subprocess",
                    "socketserver", "socket", "selectors", "queue", "sched"),
    "gui": ("tkinter", "turtle", "turtledemo", "idlelib"),
}


def doc_group(name: str) -> str | None:
    """The domain group of a pydocs document name (``topic:...`` / ``doc:<module>...``)."""
    kind, _, rest = name.partition(":")
    family = "topic" if kind == "topic" else rest.split(".")[0]
    for group, families in DOMAIN_GROUPS.items():
        if family in families:
            return group
    return None


def _windows(tokenizer, docs, seq_len: int, limit: int, rng: random.Random) -> list[dict]:
    ids: list[int] = []
    for d in docs:
        ids.extend(tokenizer.encode(d.text + "\n\n"))
        if len(ids) > 2 * limit * seq_len:
            break
    starts = list(range(0, max(len(ids) - seq_len, 1), seq_len))
    rng.shuffle(starts)
    return [{"ids": ids[s:s + seq_len], "mask": [0] + [1] * (len(ids[s:s + seq_len]) - 1)}
            for s in sorted(starts[:limit]) if len(ids[s:s + seq_len]) > 1]


def make_domains_stream(tokenizer, n_train: int = 200, n_test: int = 40, seq_len: int = 64,
                        seed: int = 0, groups=tuple(DOMAIN_GROUPS), corpus=None) -> Stream:
    """The domains stream: one task per topic group of pydocs, ``seq_len``-token windows, bpb."""
    from shared import load_corpus

    corpus = corpus or load_corpus("pydocs")
    tasks = []
    for g in groups:
        if g not in DOMAIN_GROUPS:
            raise ValueError(f"unknown domain group {g!r}; valid: {list(DOMAIN_GROUPS)}")
        rng = random.Random(f"domains-{seed}-{g}")
        train_docs = [d for d in corpus.train_docs if doc_group(d.name) == g]
        val_docs = [d for d in corpus.val_docs if doc_group(d.name) == g]
        tasks.append(Task(g, _windows(tokenizer, train_docs, seq_len, n_train, rng),
                          _windows(tokenizer, val_docs, seq_len, n_test, rng), metric="bpb"))
    return Stream("domains", tasks, tokenizer, {"seq_len": seq_len, "n_train": n_train})


def pretraining_text(corpus=None, max_chars: int | None = None) -> str:
    """pydocs text outside every domain group (what a self-trained tiny base may learn from)."""
    from shared import load_corpus

    corpus = corpus or load_corpus("pydocs")
    parts, size = [], 0
    for d in corpus.train_docs:
        if doc_group(d.name) is None:
            parts.append(d.text)
            size += len(d.text)
            if max_chars is not None and size >= max_chars:
                break
    return "\n\n".join(parts)


# ---------------------------------------------------------------- custom streams


def _is_test(key: str) -> bool:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64 < 0.2


def load_stream(path, tokenizer, seq_len: int = 64) -> Stream:
    """A stream from a folder of ``<task>.jsonl`` files (see the module docstring)."""
    folder = Path(path)
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        raise ValueError(f"{path} is not a folder of <task>.jsonl files (one file per task, in "
                         "name order); built-in streams: skills, domains")
    tasks = []
    for f in files:
        train, test, metric = [], [], None
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}:{n}: not JSON ({e})") from None
            if "text" in row:
                kind, ex = "bpb", text_example(tokenizer, row["text"], seq_len)
            elif "messages" in row:
                kind, ex = "exact_match", chat_example(tokenizer, row["messages"])
            elif "prompt" in row and "answer" in row:
                kind, ex = "exact_match", qa_example(tokenizer, row["prompt"], row["answer"])
            else:
                raise ValueError(f"{f}:{n}: a row needs 'text', 'messages', or 'prompt' and "
                                 f"'answer'; got keys {sorted(row)}")
            if metric not in (None, kind):
                raise ValueError(f"{f}:{n}: a task mixes text rows and chat rows")
            metric = kind
            split = row.get("split") or ("test" if _is_test(line) else "train")
            (test if split == "test" else train).append(ex)
        tasks.append(Task(f.stem, train, test, metric))
    return Stream(folder.name, tasks, tokenizer, {"path": str(folder)})
