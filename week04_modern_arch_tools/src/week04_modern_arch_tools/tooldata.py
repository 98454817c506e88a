"""Synthetic tool-use conversations with exact answers and a held-out split.

Three kinds, each a list of conversations in ``render_conversation``'s format
(a user question, then an assistant reply that calls a tool, reads its
output and answers):

- ``"arithmetic"``: "What is 37 * 48?" -> ``calculator: 37 * 48`` -> "1776"
  -> "37 * 48 = 1776." (two or three operands, + - * and exact division);
- ``"string"``: string and list tasks for the Python REPL (reverse, upper
  case, count a letter, length, sort, sum, max, join) -> ``python: print(...)``
  -> "tserof" -> "tserof": the answer is the printed value as printed. In a
  sentence ("The answer is tserof.") the value follows a space, and BPE encodes
  " tserof" as other tokens than the output's "tserof" (" T", "E", "N", "S", "OR"
  against "TE", "N", "S", "OR" for TENSOR), so the answer would not be a copy of
  the output and a small model does not learn to make it one (week12's CPU
  speedrun: held-out strings 0.43 in a sentence; see its README);
- ``"facts"``: questions about a generated world of countries (capital,
  population, founding year, currency, language) answered with
  ``search: ...`` over that world's facts, one sentence a passage
  (``fact_search``): "search: capital of Zorvania" -> "[1] zorvania/capital: The
  capital of Zorvania is Velmora." -> "The capital of Zorvania is Velmora.". The
  search picks the fact and the answer says its sentence. Over whole country
  documents (``make_fact_store``, five facts in ~90 tokens) a small model must
  find the one field and copy it from the middle, and it picked the wrong field or
  garbled the name (week12's CPU speedrun, tied embeddings, held-out facts:
  0.53 over country documents, 0.73 over facts; with half the training problems
  from fresh worlds, 0.63 and 0.97).

Tool outputs are the real tools' outputs: ``Calculator().run``, what the REPL
prints for the generated code (tests run a sample through ``PythonREPL``),
and ``fact_search(seed).run`` for the facts.

Held-out split: every problem has a key (its operands and operator, its
string task, its entity and attribute); a stable hash of the key puts 20% of
all problems in "test" and the rest in "train", so the two splits never share
a problem, whatever ``n`` and ``seed`` are.

Fresh entities (``fresh=True``): the strings' words come from the pydocs corpus (outside
the fixed 32 of the test problems) and the facts from newly generated worlds (a new world
every 20 problems), so no answer can be memorised from the training data: a model must read
the tool's output. A model trained on the fixed world memorises its facts instead (measured
on week12's CPU speedrun model: facts 0.70 on train problems, 0.23 on held-out ones). The
held-out test problems stay the fixed world's and words' (``fresh=False``).

Left out: multi-step problems that chain several tool calls, and natural
language variety beyond a few templates per task.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re

from shared import Document
from week04_modern_arch_tools.tools.calculator import Calculator
from week04_modern_arch_tools.tools.search import Search

KINDS = ("arithmetic", "string", "facts")
SPLITS = ("train", "test")
TEST_FRACTION = 0.2


def split_of(key: str) -> str:
    """'test' for a stable 20% of problem keys, 'train' for the rest."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return "test" if h / 2**64 < TEST_FRACTION else "train"


def _conversation(question: str, call: str, output: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": [{"type": "python", "text": call},
                                              {"type": "output", "text": output},
                                              {"type": "text", "text": answer}]}]


# ---------------------------------------------------------------- arithmetic

_ARITH_TEMPLATES = ("What is {e}?", "Compute {e}.", "Calculate {e}", "{e} = ?",
                    "Please work out {e}.", "How much is {e}?")
_CALC = Calculator()


def _arithmetic(rng: random.Random) -> tuple[str, list[dict]]:
    n_ops = rng.choice((1, 1, 1, 2))
    terms = [str(rng.randint(2, 999))]
    for _ in range(n_ops):
        op = rng.choice("+-*/")
        if op == "/":  # exact division: pick the divisor, then make the dividend a multiple
            d = rng.randint(2, 40)
            terms = [f"({' '.join(terms)})" if len(terms) > 1 else terms[0]]
            value = _CALC.evaluate(terms[0])
            if not isinstance(value, int) or value % d:
                terms = [str(d * rng.randint(2, 99))]
            terms += ["/", str(d)]
        else:
            terms += [op, str(rng.randint(2, 999) if op != "*" else rng.randint(2, 99))]
    expr = " ".join(terms)
    result = _CALC.run(expr)
    question = rng.choice(_ARITH_TEMPLATES).format(e=expr)
    return expr, _conversation(question, f"calculator: {expr}", result, f"{expr} = {result}.")


# ---------------------------------------------------------------- strings and lists

_WORDS = ("apple", "banana", "cherry", "dragon", "eleven", "forest", "guitar", "harbor", "island",
          "jungle", "kitten", "lemon", "mirror", "nectar", "orange", "pepper", "quartz", "rocket",
          "silver", "tomato", "umbrella", "violet", "window", "yellow", "zebra", "python",
          "tensor", "matrix", "vector", "kernel", "sample", "letter")


@functools.lru_cache(maxsize=1)
def fresh_words() -> tuple[str, ...]:
    """Lower-case words of 4-9 letters from the pydocs corpus, the fixed 32 left out (sorted)."""
    from shared import load_corpus

    found = set()
    for doc in load_corpus("pydocs").documents:
        found.update(re.findall(r"\b[a-z]{4,9}\b", doc.text))
    return tuple(sorted(found - set(_WORDS)))


def _string(rng: random.Random, vocabulary: tuple[str, ...] = _WORDS
            ) -> tuple[str, list[dict]]:
    task = rng.randrange(8)
    w = rng.choice(vocabulary)
    nums = [rng.randint(-50, 99) for _ in range(rng.randint(3, 6))]
    words = rng.sample(vocabulary, rng.randint(2, 4))
    if task == 0:
        q, code, val = f"Reverse the string '{w}'.", f"print('{w}'[::-1])", w[::-1]
    elif task == 1:
        q, code, val = f"Write '{w}' in upper case.", f"print('{w}'.upper())", w.upper()
    elif task == 2:
        c = rng.choice(w)
        q, code, val = (f"How many times does '{c}' appear in '{w}'?",
                        f"print('{w}'.count('{c}'))", w.count(c))
    elif task == 3:
        q, code, val = f"How long is the word '{w}'?", f"print(len('{w}'))", len(w)
    elif task == 4:
        q, code, val = f"Sort the list {nums}.", f"print(sorted({nums}))", sorted(nums)
    elif task == 5:
        q, code, val = f"What is the sum of {nums}?", f"print(sum({nums}))", sum(nums)
    elif task == 6:
        q, code, val = f"What is the largest number in {nums}?", f"print(max({nums}))", max(nums)
    else:
        q, code, val = (f"Join {words} with dashes.", f"print('-'.join({words}))",
                        "-".join(words))
    output = f"{val}\n"  # what print() writes, as the REPL returns it
    return code, _conversation(q, f"python: {code}", output, f"{val}")  # the copy: see above


# ---------------------------------------------------------------- facts

_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "dor", "sel", "tha", "qui", "bre", "zan", "ol",
              "mar", "is", "te", "gra", "pho", "lun", "ny", "sa", "vek", "ul", "dra", "fen")
_LANGUAGES = ("Kalosh", "Mirran", "Velti", "Ostric", "Thalen", "Brevish", "Zanu", "Pholic")
_CURRENCIES = ("grel", "mark", "dun", "sova", "pell", "tarn", "crown", "lira")
ATTRIBUTES = ("capital", "population", "founded", "currency", "language")


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts)).capitalize()


def make_world(seed: int | str = 0, n: int = 120) -> list[dict]:
    """``n`` fictional countries with unique names and five attributes each."""
    rng = random.Random(f"world-{seed}")
    seen, world = set(), []
    while len(world) < n:
        name = _name(rng, 3) + rng.choice(("ia", "land", "stan", "ora"))
        capital = _name(rng, 2) + rng.choice(("", "ton", "grad", "heim"))
        if name in seen or capital in seen:
            continue
        seen.update((name, capital))
        world.append({"name": name, "capital": capital,
                      "population": rng.randint(10, 9999) * 1000,
                      "founded": rng.randint(800, 1990),
                      "currency": rng.choice(_CURRENCIES),
                      "language": rng.choice(_LANGUAGES)})
    return world


FACT_STORES = ("country", "fact")


def make_fact_store(seed: int | str = 0, n: int = 120, per: str = "country") -> list[Document]:
    """The facts of ``make_world(seed, n)``: ``per="country"``, one short document per country
    (what week10's readers retrieve); ``per="fact"``, one sentence per fact, named
    ``<country>/<attribute>``, each the facts task's answer (what ``fact_search`` searches)."""
    if per not in FACT_STORES:
        raise ValueError(f"unknown per {per!r}; valid: {', '.join(FACT_STORES)}")
    world = make_world(seed, n)
    if per == "fact":
        return [Document(f"{c['name'].lower()}/{attr}",
                         _FACT_QUESTIONS[attr][2].format(n=c["name"], v=c[attr]))
                for c in world for attr in ATTRIBUTES]
    return [Document(c["name"].lower(),
                     f"{c['name']} is a country. Its capital is {c['capital']}. Its population is "
                     f"{c['population']}. It was founded in {c['founded']}. Its currency is the "
                     f"{c['currency']}. People there speak {c['language']}.")
            for c in world]


def fact_search(seed: int | str = 0, n: int = 120) -> Search:
    """The facts task's tool: BM25 over one sentence per fact, the best passage only."""
    return Search(make_fact_store(seed, n, per="fact"), top_k=1)


_FACT_QUESTIONS = {
    "capital": ("What is the capital of {n}?", "capital of {n}", "The capital of {n} is {v}."),
    "population": ("What is the population of {n}?", "population of {n}",
                   "The population of {n} is {v}."),
    "founded": ("When was {n} founded?", "{n} founded", "{n} was founded in {v}."),
    "currency": ("What currency does {n} use?", "currency of {n}",
                 "The currency of {n} is the {v}."),
    "language": ("What language is spoken in {n}?", "language of {n}",
                 "The language of {n} is {v}."),
}


class _Facts:
    def __init__(self, seed: int | str):
        self.world = make_world(seed)
        self.search = fact_search(seed)

    def __call__(self, rng: random.Random) -> tuple[str, list[dict]]:
        c = rng.choice(self.world)
        attr = rng.choice(ATTRIBUTES)
        q, query, a = _FACT_QUESTIONS[attr]
        query = query.format(n=c["name"])
        conv = _conversation(q.format(n=c["name"]), f"search: {query}", self.search.run(query),
                             a.format(n=c["name"], v=c[attr]))
        return f"{c['name']}/{attr}", conv


class _FreshFacts:
    """Facts from a new generated world every ``per_world`` problems (``fresh=True``)."""

    def __init__(self, seed: int, per_world: int = 20):
        self.seed, self.per_world, self.drawn, self.facts = seed, per_world, 0, None

    def __call__(self, rng: random.Random) -> tuple[str, list[dict]]:
        if self.drawn % self.per_world == 0:
            self.world = f"{self.seed}-fresh-{self.drawn // self.per_world}"
            self.facts = _Facts(self.world)
        self.drawn += 1
        key, conv = self.facts(rng)
        return f"{self.world}:{key}", conv


# ---------------------------------------------------------------- the dataset


def make_tool_dataset(kind: str, n: int, seed: int = 0, split: str = "train",
                      fresh: bool = False) -> list[list[dict]]:
    """``n`` conversations of ``kind`` from ``split``; the same arguments give the same list.
    ``fresh``: entities drawn anew (see the module docstring; arithmetic is always fresh).

    Problems repeat within a split only when the split has fewer than ``n``
    distinct problems (the facts test split has 120 countries x 5 attributes x
    20% ~ 120 problems).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if fresh:
        vocabulary = fresh_words()
        make = {"arithmetic": _arithmetic,
                "string": lambda rng: _string(rng, vocabulary)}.get(kind) or _FreshFacts(seed)
    else:
        make = {"arithmetic": _arithmetic, "string": _string}.get(kind) or _Facts(seed)
    rng = random.Random(f"{kind}-{seed}-{split}" + ("-fresh" if fresh else ""))
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise RuntimeError(f"could not draw {n} {kind} problems for split {split!r}")
        key, conv = make(rng)
        if split_of(f"{kind}:{key}") == split:
            out.append(conv)
    return out
