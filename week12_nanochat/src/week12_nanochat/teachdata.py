"""Facts a user teaches the model, asked back in other words: data for the memory and its tests.

``make_facts(n, seed, split)`` draws ``TaughtFact``s from six kinds of personal
facts (a pet's name, a favourite thing, a person's job, where a person lives,
a code, the day of an event). Each fact has the sentence a user would type
(``text``), the value that answers it (``answer``, a made-up word or number
no model knows beforehand) and questions that ask it back:

- ``questions``: the phrasings the SFT data and the consolidation train on;
- ``paraphrases``: phrasings held out of every training set, for recall
  "asked in paraphrase" (the mission test of week12's memory).

``split_of`` (week04's stable hash of subject and value) keeps the facts of
the "train" and "test" splits apart, so a fact the benchmark teaches was
never in the speedrun's SFT data (a subject may recur with another value:
the model has to read, not remember).

``reading_conversations(facts, seed)`` renders each fact as week10's RAG
prompt (``rag_messages``: the fact among other taught facts as numbered
sources, then the question) with the reply that answers from the sources and
cites them, and ``closed_book(facts)`` the same question with no sources and
the same reply without the citation (what an adapter that consolidated the
fact is trained on). ``correct(reply, fact)`` is week10's exact match.

Left out: facts that contradict earlier ones (a correction is a forget and a
new teach), multi-fact questions and any natural language beyond templates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from week04_modern_arch_tools.tooldata import split_of
from week10_hydra.factworld import exact_match
from week10_hydra.rag import rag_messages
from week10_hydra.retrieval import Hit

KINDS = ("pet", "favourite", "job", "home", "code", "event")
_SYL = ("ka", "lo", "mi", "ra", "ven", "dor", "sel", "tha", "qui", "bre", "zan", "ol", "mar",
        "te", "gra", "pho", "lun", "sa", "vek", "ul", "dra", "fen", "bo", "ri")
_ANIMALS = ("dog", "cat", "parrot", "horse", "rabbit", "goldfish", "tortoise", "hamster")
_OWNERS = ("", "sister's ", "brother's ", "neighbour's ", "friend's ", "aunt's ")
_THINGS = ("colour", "fruit", "song", "book", "game", "flower", "dish", "tea", "film", "bird",
           "sport", "city", "cheese", "dance", "poem", "river", "cake", "number")
_JOBS = ("baker", "pilot", "nurse", "teacher", "plumber", "painter", "lawyer", "farmer",
         "chemist", "tailor", "miner", "sailor")
_EVENTS = ("dentist appointment", "team meeting", "piano lesson", "birthday party",
           "book club", "yoga class", "job interview", "school play", "football match",
           "concert", "parents evening", "car service", "flight home", "chess lesson",
           "garden party", "swimming lesson", "art class", "quiz night")
_LOCKS = ("garage", "safe", "front door", "bike lock", "locker", "gate", "shed", "office",
          "back door", "suitcase", "mailbox", "alarm", "cellar", "attic", "phone", "laptop")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# kind -> (statement, answer reply, trained questions, held-out paraphrases); {s} the subject
# ("my sister's dog"), {r} the subject as the reply says it ("your sister's dog"), {v} the value
_TEMPLATES = {
    "pet": ("{s} is called {v}.", "{r} is called {v}",
            ("What is {s} called?", "What is the name of {s}?"),
            ("Do you remember what {s} is named?",)),
    "favourite": ("{s} is {v}.", "{r} is {v}",
                  ("What is {s}?", "Can you tell me {s}?"),
                  ("Remind me, which one is {s}?",)),
    "job": ("{s} works as a {v}.", "{s} works as a {v}",
            ("What does {s} do for a living?", "What is the job of {s}?"),
            ("Remind me what {s} works as.",)),
    "home": ("{s} lives in {v}.", "{s} lives in {v}",
             ("Where does {s} live?", "In which town does {s} live?"),
             ("Which place is the home of {s}?",)),
    "code": ("The code for {s} is {v}.", "The code for {r} is {v}",
             ("What is the code for {s}?", "Which number opens {s}?"),
             ("Remind me of the code for {s}.",)),
    "event": ("{s} is on {v}.", "{r} is on {v}",
              ("When is {s}?", "On which day is {s}?"),
              ("What day did I say {s} was?",)),
}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass
class TaughtFact:
    key: str  # kind:subject, unique within a draw
    kind: str
    subject: str
    text: str  # what the user says to teach it
    answer: str  # the value a correct reply contains
    reply: str  # the reference reply (no citation)
    questions: list[str] = field(default_factory=list)
    paraphrases: list[str] = field(default_factory=list)


def _word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(parts)).capitalize()


def _draw(kind: str, rng: random.Random) -> tuple[str, str]:
    """(subject, value) of one fact of ``kind``."""
    if kind == "pet":
        return "my " + rng.choice(_OWNERS) + rng.choice(_ANIMALS), _word(rng, 2)
    if kind == "favourite":
        return f"my {rng.choice(_OWNERS)}favourite {rng.choice(_THINGS)}", _word(rng, 2).lower()
    if kind == "job":
        return _word(rng, 2), rng.choice(_JOBS)
    if kind == "home":
        return _word(rng, 2), _word(rng, 2) + rng.choice(("ton", "by", "ford", "wick"))
    if kind == "code":
        return "my " + rng.choice(_OWNERS) + rng.choice(_LOCKS), str(rng.randint(1000, 9999))
    return "my " + rng.choice(_OWNERS) + rng.choice(_EVENTS), rng.choice(_DAYS)


def make_facts(n: int, seed: int = 0, split: str = "train") -> list[TaughtFact]:
    """``n`` facts of ``split`` with distinct keys (one value per subject); the same arguments
    give the same list. A draw cycles through the kinds, so every kind is represented."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    rng = random.Random(f"taught-{seed}-{split}")
    out, keys, tries = [], set(), 0
    while len(out) < n:
        tries += 1
        if tries > 500 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct facts for split {split!r}")
        kind = KINDS[len(out) % len(KINDS)]
        subject, value = _draw(kind, rng)
        key = f"{kind}:{subject}"
        if key in keys or split_of(f"taught:{key}={value}") != split:
            continue
        keys.add(key)
        statement, reply, qs, ps = _TEMPLATES[kind]
        said = "your " + subject[3:] if subject.startswith("my ") else subject
        fill = {"s": subject, "r": said, "v": value}
        out.append(TaughtFact(key, kind, subject, _cap(statement.format(**fill)), value,
                              _cap(reply.format(**fill)) + ".", [q.format(**fill) for q in qs],
                              [p.format(**fill) for p in ps]))
    return out


def correct(reply_text: str, fact: TaughtFact) -> bool:
    """The fact's value is a whole word of the reply (week10's exact match)."""
    return exact_match(reply_text, fact.answer)


# ---------------------------------------------------------------- conversations


def _source(fact: TaughtFact) -> str:
    return f"memory-{fact.kind}-{fact.subject.replace(' ', '-').lower()}#0"


def reading_conversations(facts: list[TaughtFact], seed: int = 0, sources: int = 3,
                          max_chars: int = 600) -> list[list[dict]]:
    """One conversation per (fact, trained question): the fact and ``sources - 1`` other facts
    as week10 RAG sources in random order, then the reply citing the fact's number."""
    rng = random.Random(f"reading-{seed}")
    convs = []
    for fact in facts:
        for q in fact.questions:
            others = rng.sample([f for f in facts if f.key != fact.key],
                                min(sources - 1, len(facts) - 1))
            shown = others + [fact]
            rng.shuffle(shown)
            hits = [Hit(0.0, _source(f), f.text, i) for i, f in enumerate(shown)]
            n = shown.index(fact) + 1
            msgs = rag_messages([{"role": "user", "content": q}], hits, max_chars=max_chars)
            convs.append(msgs + [{"role": "assistant",
                                  "content": f"{fact.reply[:-1]} [{n}]."}])
    return convs


def closed_book(facts: list[TaughtFact], paraphrases: bool = False) -> list[list[dict]]:
    """Each trained question (or held-out paraphrase) with the reference reply, no sources."""
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": f.reply}]
            for f in facts for q in (f.paraphrases if paraphrases else f.questions)]
