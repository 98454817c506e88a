"""``Memory``: what the user teaches the chat model, answered at once and consolidated later.

``teach(text, topic, user)`` splits the text into sentences, one ``Fact`` each,
and puts them in a week10 ``DocumentStore`` (dense MiniLM + BM25, hybrid). The
facts answer AT ONCE: ``plan(question)`` (what ``ChatEngine`` calls per request)
searches the store and, when the best fact is close enough to the question
(dense cosine >= ``min_score``), asks Hydra to retrieve the facts into the
prompt in week10's RAG format (``rag=True``: the format the speedrun's SFT
trains the model to read, ``teachdata.reading_conversations``) and says how
many prompt tokens that adds (``reserve``). A question far from every fact
(arithmetic, code) gets the plain model: no retrieval, no adapter, and so do
sources that would not fit the model's context and a question nearer one of the
base's own tool questions (``base_score``: week04's train split, what the plain
model was trained to answer) than any taught fact.

``consolidate()`` starts (or resumes) the background job of ``consolidate.py``:
the taught facts trained into LoRA adapters of ``library`` (a week10
``AdapterLibrary`` hooked on the engine's model) with self-generated replay and
EWC. Once a fact's topic has an adapter, ``plan`` names it (``adapter``) and
that adapter answers closed-book, as it was trained (``rag_with_adapter``: with
the retrieved facts too; measured on the dev reader, a model that reads
poorly, retrieval next to the adapter cut paraphrase recall from 0.83 to
0.08); ``label`` says which memory answered ("retrieval" or the adapter).

Routing (``MemoryConfig.route``): ``"retrieval"`` (default) serves the adapter
of the best retrieved fact's topic; ``"prototype"`` asks ``router`` (week10's
``PrototypeRouting``, the base model's hidden states against each adapter's
prototype, what Hydra's ``adapter="auto"`` uses) and falls back to the plain
model below its threshold.

Persistence (folder): ``memory.json`` (the facts, which topics await
consolidation; ``shared.write_json_atomic``) is the commit point; ``store/``
(``DocumentStore.save``), ``adapters/`` (the library's week07 ``AdapterStore``,
the router and the EWC state as blobs), ``replay/`` (week07 ``ReplayBuffer``)
and ``job/`` (the job's week03 ``Trainer`` checkpoints). A store that does not
match the committed facts (a save killed between the two writes) is rebuilt
from the facts when the folder opens.

Threads: ``plan``, ``teach``, ``forget`` and every publish of the background
job hold ``memory.lock``. A reply never sees an adapter swapped under it: a
batch that decodes with adapters holds ``memory.serving`` from the moment
``ChatEngine.stream`` routes it until its last token, and every change to the
adapters (``publishing()``: a publish, a delete) takes ``memory.serving`` first,
so it waits for that batch to end (a batch with adapters takes no new rows, so
it ends). A batch without adapters lets go of it at once: it never reads them.

Left out: contradiction detection (a correction is ``forget`` + ``teach``),
several processes sharing one folder, and per-user access control (``user``
names an adapter, it does not guard one).
"""

from __future__ import annotations

import re
import threading
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from shared import CheckpointError, write_json_atomic
from week10_hydra.bank import AdapterBank
from week10_hydra.encoders import CachedEncoder, HashEncoder
from week10_hydra.library import AdapterLibrary
from week10_hydra.rag import rag_messages
from week10_hydra.retrieval import DocumentStore

FORMAT = "week12-memory"
VERSION = 1
STATE_FILE = "memory.json"
RAG_K, RAG_CHARS = 3, 1200  # what week10's Hydra retrieves per request (its defaults)
SHARED = "memory"  # the shared adapter; topic adapters are its children "memory/<key>"
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,40}")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
ROUTES = ("retrieval", "prototype")

# ---------------------------------------------------------------- facts and plans


@dataclass
class Fact:
    id: str
    text: str
    topic: str
    user: str
    created: str  # ISO time (UTC)
    questions: list[str] = field(default_factory=list)  # given phrasings to train on

    @property
    def key(self) -> str:
        """The adapter slot of this fact: its topic, or ``<user>-<topic>`` for a named user."""
        return self.topic if not self.user else f"{self.user}-{self.topic}"

    @property
    def doc(self) -> str:
        return f"memory-{self.key}-{self.id}"


@dataclass
class MemoryPlan:
    adapter: object = None  # the Hydra adapter spec that answers (None: the base)
    rag: bool = False  # retrieve the taught facts into the prompt
    label: str | None = None  # which memory answered ("retrieval" or an adapter name)
    reserve: int = 0  # prompt tokens the retrieval adds


@dataclass
class MemoryConfig:
    """The memory's retrieval, routing and consolidation settings."""

    encoder: str = "minilm"  # "minilm" (all-MiniLM-L6-v2) | "hash" (no model; tests)
    min_score: float = 0.35  # dense cosine of the best fact below which nothing is retrieved
    # tool questions of the base's own tasks (week04's train split) the plain model answers: a
    # question nearer one of them than any taught fact goes to the plain model (0: no gate).
    # Without it 40% of the held-out tool questions went to the memory by the 50th fact (the
    # world's names sound like taught ones) and the tool tasks fell 0.90 -> 0.63
    base_prompts: int = 60
    route: str = "retrieval"  # "retrieval" | "prototype" (see the module docstring)
    router_threshold: float = 0.2  # the prototype router's cosine threshold
    rag_with_adapter: bool = False  # retrieve even when a consolidated adapter answers
    train_reading: bool = False  # adapters also trained on RAG readings of their facts
    # consolidation (consolidate.py)
    lora_r: int = 16  # (8, and 10 steps per fact: recall fell to 0.84 by the 50th fact)
    lora_alpha: float = 16.0
    shared_steps: int = 40  # steps on the shared adapter per job (new facts + replay, EWC)
    topic_steps: int = 30  # steps per topic adapter (its facts + replay), at least
    steps_per_fact: int = 20  # ... and this many per fact of the topic
    lr: float = 5e-3
    batch_size: int = 8
    replay_ratio: float = 0.5  # replayed rows per batch
    replay_prompts: int = 48  # prompts the base answers once, recorded as replay
    replay_capacity: int = 256
    replay_tokens: int = 48  # max new tokens of a recorded reply
    ewc_lambda: float = 50.0
    fisher_examples: int = 32
    ckpt_every: int = 10  # trainer checkpoints (the job resumes from the last one)
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.encoder not in ("minilm", "hash"):
            raise ValueError(f"MemoryConfig.encoder must be 'minilm' or 'hash', got "
                             f"{self.encoder!r}")
        if self.route not in ROUTES:
            raise ValueError(f"MemoryConfig.route must be one of {ROUTES}, got {self.route!r}")
        if not -1.0 <= self.min_score <= 1.0:
            raise ValueError(f"MemoryConfig.min_score is a cosine in [-1, 1], got "
                             f"{self.min_score}")
        for k in ("lora_r", "shared_steps", "topic_steps", "steps_per_fact", "batch_size",
                  "replay_prompts", "replay_capacity", "replay_tokens", "fisher_examples", "ckpt_every"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"MemoryConfig.{k} must be a positive int, got {v!r}")
        v = self.base_prompts
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"MemoryConfig.base_prompts must be an int >= 0, got {v!r}")
        if not 0.0 <= self.replay_ratio < 1.0:
            raise ValueError(f"MemoryConfig.replay_ratio must be in [0, 1), got "
                             f"{self.replay_ratio}")


def split_facts(text: str) -> list[str]:
    """The sentences of ``text`` (cut after ``.``, ``!`` or ``?``), whitespace squeezed."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("teach needs a non-empty text: one or more sentences stating facts, "
                         f"got {text!r}")
    return [" ".join(s.split()) for s in _SENTENCE.split(text.strip()) if s.strip()]


def _segment(value, what: str, default: str | None) -> str | None:
    if value is None:
        return default
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
        raise ValueError(f"{what} must be 1-40 letters, digits, '_' or '-' (it names an "
                         f"adapter), got {value!r}")
    return value


def bank_targets(model) -> list[str]:
    """The layers memory adapters adapt: week06's default targets (attention and MLP
    projections) and the output head, as week07's LoRA strategies do (``lora_head``)."""
    import torch.nn as nn

    from week06_lora import default_targets

    targets = default_targets(model)
    head = getattr(model, "lm_head", None)
    if isinstance(head, nn.Module) and hasattr(head, "in_features") and "lm_head" not in targets:
        targets.append("lm_head")
    return targets


def make_encoder(name: str):
    if name == "hash":
        return HashEncoder(256)
    from week10_hydra.encoders import MiniLMEncoder

    return MiniLMEncoder()


class MemoryRouter:
    """What Hydra's ``adapter="auto"`` calls: the memory's current ``PrototypeRouting``
    (replaced by each job; this object stays, so an engine built before a job sees the
    new one), or the base (None) for every prompt before any topic adapter exists."""

    def __init__(self, memory: Memory):
        self.memory = memory

    @property
    def names(self) -> list[str]:
        routing = self.memory.routing
        return routing.names if routing is not None else []

    def route(self, prompts) -> list[str | None]:
        routing = self.memory.routing
        return routing.route(prompts) if routing is not None else [None] * len(prompts)


# ---------------------------------------------------------------- the memory


class Memory:
    """Taught facts: a document store that answers at once, adapters that consolidate them."""

    def __init__(self, folder, model, tokenizer, config: MemoryConfig | None = None,
                 encoder=None):
        """``encoder``: a week10 encoder to use instead of ``config.encoder`` (one MiniLM
        shared by several memories); a reopened folder needs the encoder it was built with."""
        self.folder, self.model, self.tokenizer = Path(folder), model, tokenizer
        self.config = config or MemoryConfig()
        self._check_folder()
        self.encoder = CachedEncoder(encoder or make_encoder(self.config.encoder))
        self.lock = threading.RLock()  # held by plan, teach, forget and every publish
        self.serving = threading.Lock()  # a batch decoding with adapters; taken before lock
        self.library = AdapterLibrary(self.folder / "adapters",
                                      AdapterBank(model, bank_targets(model)))
        self._facts: list[Fact] = []
        self.pending: list[str] = []  # keys whose adapters need (re)training
        self.taught: list[str] = []  # fact ids not yet in the shared adapter
        self.shared_stale = False  # a forgotten fact is still in the shared adapter
        self._load()
        if not (self.folder / STATE_FILE).exists():
            self.save()  # a new memory commits at once: the folder is then a Memory's, reopened
        self.routing = None  # week10 PrototypeRouting over the topic adapters, once trained
        self._base = None  # (N, D) the base's tool questions, encoded on the first plan
        self.router = MemoryRouter(self)
        self._load_router()
        from week12_nanochat.consolidate import Job

        self.job = Job(self)

    # -- files
    def _check_folder(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"memory folder {self.folder} is a file, not a folder")
        state = self.folder / STATE_FILE
        if self.folder.exists() and any(self.folder.iterdir()) and not state.exists():
            raise CheckpointError(f"{self.folder} is not empty and has no {STATE_FILE}: it was "
                                  "written by something else; give an empty or new folder, or "
                                  "a folder a Memory wrote")

    def _load(self) -> None:
        import json

        path = self.folder / STATE_FILE
        if not path.exists():
            self.store = self._new_store([])
            return
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} is corrupt ({e}); a Memory only replaces it "
                                  "atomically, so something else wrote it") from None
        if not isinstance(s, dict) or s.get("format") != FORMAT or s.get("version") != VERSION:
            raise CheckpointError(f"{path} is not a {FORMAT} v{VERSION} file (format "
                                  f"{s.get('format') if isinstance(s, dict) else None!r})")
        self._facts = [Fact(**f) for f in s["facts"]]
        self.pending, self.taught = list(s["pending"]), list(s["taught"])
        self.shared_stale = bool(s["shared_stale"])
        want = {f.doc for f in self._facts}
        try:
            store = DocumentStore.load(self.folder / "store", self.encoder, progress=False)
        except CheckpointError:
            store = None
        if store is None or store.doc_names != want:  # killed between the two writes
            store = self._new_store(self._facts)
            store.save(self.folder / "store")
        self.store = store

    def _new_store(self, facts: list[Fact]) -> DocumentStore:
        store = DocumentStore(self.encoder, chunk_words=200, overlap_words=20, kind="flat",
                              progress=False)
        if facts:
            store.add_documents([(f.doc, f.text) for f in facts])
        return store

    def save(self) -> None:
        """Store first, then the facts (the commit point); see the module docstring."""
        with self.lock:
            self.store.save(self.folder / "store")
            write_json_atomic(self.folder / STATE_FILE, {
                "format": FORMAT, "version": VERSION, "facts": [asdict(f) for f in self._facts],
                "pending": self.pending, "taught": self.taught,
                "shared_stale": self.shared_stale})

    def _load_router(self) -> None:
        if "router" not in self.library.store.manifest["blobs"]:
            self.routing = None
            return
        from week10_hydra.routing import PrototypeRouting

        state, _ = self.library.store.load_blob("router")
        self.routing = PrototypeRouting.from_state(state, self.model, self.tokenizer,
                                                   self.library.bank)
        if not all(n in self.library for n in self.routing.names):  # adapters since deleted
            self.routing = None

    # -- reading
    def facts(self) -> list[Fact]:
        with self.lock:
            return list(self._facts)

    def _fact_of(self, hit) -> Fact | None:
        doc = self.store.chunks[hit.chunk_id].doc
        return next((f for f in self._facts if f.doc == doc), None)

    def adapter_for(self, key: str) -> str | None:
        """The adapter that serves facts of ``key``: its topic adapter, else the shared one
        (once consolidated), else None."""
        for name in (f"{SHARED}/{key}", SHARED):
            if name in self.library:
                return name
        return None

    def base_score(self, question: str) -> float:
        """The dense cosine of ``question`` to the nearest of the base's own tool questions
        (``MemoryConfig.base_prompts`` of week04's train split; -1 without any)."""
        if self._base is None:
            from week04_modern_arch_tools import make_tool_dataset
            from week04_modern_arch_tools.tooldata import KINDS

            n = self.config.base_prompts
            qs = [c[0]["content"] for i, kind in enumerate(KINDS)
                  for c in make_tool_dataset(kind, n // len(KINDS) + (i < n % len(KINDS)),
                                                 self.config.seed)]
            self._base = self.encoder.encode(qs) if qs else np.zeros((0, 1), np.float32)
        if not len(self._base):
            return -1.0
        q = self.encoder.encode([question])[0]  # (D,), unit norm like the rows
        return float((self._base @ q).max())

    def plan(self, question: str) -> MemoryPlan:
        """Which adapter answers ``question`` and whether the taught facts are retrieved."""
        if not isinstance(question, str) or not question.strip():
            return MemoryPlan()
        with self.lock:
            if not self._facts:
                return MemoryPlan()
            best = self.store.search(question, k=1, mode="dense")
            if not best or best[0].score < self.config.min_score:
                return MemoryPlan()  # no taught fact is about this: the plain model
            if self.base_score(question) >= best[0].score:
                return MemoryPlan()  # one of the base's own tool questions is nearer
            hits = self.store.search(question, k=RAG_K)  # what Hydra will retrieve
            shown = rag_messages([{"role": "user", "content": question}], hits, RAG_CHARS)
            asked = len(self.tokenizer.encode(question))
            reserve = len(self.tokenizer.encode(shown[-1]["content"])) - asked
            if asked + reserve + 16 > getattr(self.model.config, "block_size", 1 << 30):
                return MemoryPlan()  # the sources would not fit the model's context
            if self.config.route == "prototype":
                adapter = self.router.route([question])[0]
            else:
                fact = self._fact_of(best[0])
                adapter = self.adapter_for(fact.key) if fact is not None else None
            if adapter is not None and not self.config.rag_with_adapter:
                return MemoryPlan(adapter, False, adapter, 0)  # closed-book, as it was trained
            return MemoryPlan(adapter, True, adapter or "retrieval", max(0, reserve))

    # -- writing
    def teach(self, text: str, topic: str | None = None, user: str | None = None,
              questions: list[str] | None = None) -> list[Fact]:
        """Store each sentence of ``text`` as a fact of ``topic`` (default "general") for
        ``user``; answered at once, consolidated by the next job. ``questions`` (optional):
        phrasings that ask the fact back, trained on besides the generic ones."""
        sentences = split_facts(text)
        topic = _segment(topic, "topic", "general")
        user = _segment(user, "user", "")
        if questions is not None and (isinstance(questions, str) or not all(
                isinstance(q, str) and q.strip() for q in questions)):
            raise ValueError(f"questions must be a list of non-empty strings, got {questions!r}")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        new = [Fact(uuid.uuid4().hex[:12], s, topic, user, now, list(questions or []))
               for s in sentences]
        with self.lock:
            self.store.add_documents([(f.doc, f.text) for f in new])
            self._facts.extend(new)
            for f in new:
                if f.key not in self.pending:
                    self.pending.append(f.key)
                self.taught.append(f.id)
            self.save()
        return new

    def forget(self, fact_id: str | None = None, query: str | None = None) -> list[Fact]:
        """Remove fact ``fact_id``, or the fact that best matches ``query`` (over
        ``min_score``), from the store and the facts; its topic's adapter is retrained
        without it (deleted when the topic is empty) and the shared adapter is rebuilt from
        the remaining facts by the next ``consolidate``."""
        if (fact_id is None) == (query is None):
            raise ValueError("forget takes exactly one of fact_id= or query=")
        with self.lock:
            if fact_id is not None:
                gone = [f for f in self._facts if f.id == fact_id]
                if not gone:
                    raise KeyError(f"no fact {fact_id!r} in this memory; ids: "
                                   f"{[f.id for f in self._facts][:20]}")
            else:
                if not isinstance(query, str) or not query.strip():
                    raise ValueError("forget(query=...) needs a non-empty query")
                best = self.store.search(query, k=1, mode="dense") if self._facts else []
                if not best or best[0].score < self.config.min_score:
                    return []
                gone = [self._fact_of(best[0])]
            ids = {f.id for f in gone}
            self._facts = [f for f in self._facts if f.id not in ids]
            self.store = self._new_store(self._facts)
            for f in gone:
                if f.key not in self.pending:
                    self.pending.append(f.key)
            if any(i not in self.taught for i in ids):
                self.shared_stale = True  # the shared adapter was trained on it
            self.taught = [i for i in self.taught if i not in ids]
            self.save()
        return gone

    # -- consolidation (consolidate.py)
    def status(self) -> dict:
        """The consolidation job: state idle|running|done|failed, step, steps, topic, error
        (and pending: the topics waiting for it)."""
        return {**self.job.status(), "pending": list(self.pending)}

    def consolidate(self, background: bool = True):
        """Start (or resume) the consolidation job; returns its thread (background) or its
        final status."""
        return self.job.start(background)

    @contextmanager
    def publishing(self):
        """Hold off every reply that decodes with adapters while they change: waits for the
        batch decoding with them to end (``serving``), then holds ``lock`` too."""
        with self.serving, self.lock:
            yield

    def close(self) -> None:
        """Wait for a running job, then release the bank's hooks on the model."""
        self.job.join()
        self.library.bank.close()
