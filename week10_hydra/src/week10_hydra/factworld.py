"""The fact world: questions about facts the base never saw, answered five ways through Hydra.

Two worlds of fictional countries from week04's ``make_world``: the *train*
world (seed 0, grown to ``n_train`` = 400 countries; its first 120 are
``make_world(0)``: with only 120 names the reader memorised them and
rewrote new names into old ones) and a *new* world (seed 7) whose facts the
reader never sees (new countries whose name or capital is a train-world
name are skipped).

The *reader* is a tiny week04 Llama, SFT-trained with week04's ``finetune``
(week03's Trainer) on train-world conversations of four kinds, every fact of
the train world in each kind:

- ``closed``: the question alone -> the answer from memory;
- ``search``: a system message offering the tool (``SEARCH_SYSTEM``), the
  question -> ``search: capital of X`` -> the output of the store's own tool
  (``DocumentStore.as_tool``, what Hydra runs) -> the answer;
- ``rag``: ``rag_messages(question, hits)`` with hits from the store (what
  Hydra renders for ``rag=True``) -> the answer citing the passage as [n];
- ``both``: the tool offered *and* passages given -> the answer read from
  the passages (with sources in hand the reader does not search).

Every answer is week04's sentence ("The capital of X is Y."). The *fact
adapter* is a week06 LoRA trained with week07's ``train_task`` closed-book on
the new world's questions (knowledge, asked as it was taught, as week07's
``new_facts``), then loaded into the ``AdapterBank`` as ``"facts"``. For
evaluation the store also holds the new world's documents.

``evaluate`` serves the new world's questions through ``Hydra.serve`` in
batches under one of five ``CONDITIONS`` (base, +RAG, +search, +fact adapter,
everything). Exact match (EM): the gold value ("Velgrad", "1204", "grel")
appears as a whole word in the reply's final text (``Reply.text``: after
the last tool output), case, punctuation and spacing ignored. A reply that
calls a tool in a condition that does not offer one counts as wrong (the
store's search tool is always installed in Hydra; the system message is
what offers it).

Measured (tiny preset, 1 CPU thread, 12 min, most of it the reader's 3000
steps): EM on the new world 0.03 base, 0.57 +RAG, 0.38 +search, 0.70 +fact
adapter, 0.47 everything. The reader reads the currency and the language
(0.93-1.00) far better than it copies a new capital (0.17-0.57) or a
seven-digit population (0.00): copying long unseen strings is what a
4x128 model learns last.

Left out: multi-hop questions, paraphrased questions (questions are asked in
the templates the reader and the adapter were taught), sampling (greedy) and
caching the fact adapter (it trains in seconds; the reader is cached).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shared import load_model, runs_root, save_model
from week02_bpe import BPETokenizer
from week04_modern_arch_tools import Llama, LlamaConfig, finetune, fit_tokenizer, make_fact_store
from week04_modern_arch_tools.sft import conversation_text
from week04_modern_arch_tools.tooldata import _FACT_QUESTIONS, ATTRIBUTES, make_world
from week06_lora import inject_lora
from week07_continual import Task, train_task
from week07_continual import TrainConfig as ContinualConfig
from week07_continual.tasks import qa_example
from week10_hydra.bank import AdapterBank
from week10_hydra.encoders import CachedEncoder, HashEncoder, MiniLMEncoder
from week10_hydra.hydra import Hydra, Request
from week10_hydra.rag import rag_messages
from week10_hydra.retrieval import DocumentStore

SEARCH_SYSTEM = "You can use the search tool."
KINDS = ("closed", "search", "rag", "both")
ADAPTER = "facts"
CACHE_DIR = "week10-factworld"


@dataclass(frozen=True)
class Condition:
    adapter: str | None = None
    rag: bool = False
    search: bool = False


CONDITIONS = {
    "base": Condition(),
    "+RAG": Condition(rag=True),
    "+search": Condition(search=True),
    "+fact adapter": Condition(adapter=ADAPTER),
    "everything": Condition(adapter=ADAPTER, rag=True, search=True),
}

# ---------------------------------------------------------------- config


@dataclass
class FactWorldConfig:
    preset: str = "tiny"
    train_seed: int = 0
    new_seed: int = 7
    n_train: int = 400  # train-world countries: many names, so copying beats memorising
    n_new: int = 40  # new-world countries asked about
    attributes: tuple = ATTRIBUTES
    encoder: str = "minilm"  # "minilm" | "hash" (no model; for the smoke preset)
    rag_k: int = 1  # passages per RAG prompt and per search call
    rag_chars: int = 400
    # the reader
    vocab_size: int = 512
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_kv_head: int = 2
    block_size: int = 256
    reader_steps: int = 3000
    reader_batch: int = 16
    reader_lr: float = 3e-3
    # the fact adapter
    adapter_r: int = 16
    adapter_alpha: float = 32.0
    adapter_steps: int = 300
    adapter_lr: float = 5e-3
    # serving
    serve_batch: int = 32
    max_new_tokens: int = 128  # counts the forced tool output too
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        bad = [a for a in self.attributes if a not in ATTRIBUTES]
        if bad or not self.attributes:
            raise ValueError(f"attributes must be a non-empty subset of {ATTRIBUTES}, got "
                             f"{self.attributes!r}")
        if self.encoder not in ("minilm", "hash"):
            raise ValueError(f"encoder must be 'minilm' or 'hash', got {self.encoder!r}")
        if not 1 <= self.n_train <= 2000 or not 1 <= self.n_new <= 100:
            raise ValueError(f"need 1 <= n_train <= 2000 and 1 <= n_new <= 100, got n_train="
                             f"{self.n_train}, n_new={self.n_new}")
        self.attributes = tuple(self.attributes)

    def reader_key(self) -> str:
        """A hash of every field the reader (and its tokenizer) depends on."""
        skip = {"preset", "n_new", "new_seed", "adapter_r", "adapter_alpha", "adapter_steps",
                "adapter_lr", "serve_batch", "max_new_tokens", "progress"}
        fields = {k: v for k, v in asdict(self).items() if k not in skip}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


PRESETS = {
    # seconds, for the tests: the reader learns next to nothing, the adapter its 12 facts
    "smoke": dict(n_train=12, n_new=6, attributes=("capital", "currency"), encoder="hash",
                  vocab_size=320, n_layer=2, n_embd=48, n_head=4, n_kv_head=2, block_size=256,
                  reader_steps=60, reader_batch=8, adapter_r=8, adapter_alpha=16.0,
                  adapter_steps=200, adapter_lr=1e-2, serve_batch=16),
    # the CPU figures: minutes on 2 cores
    "tiny": dict(),
    # the same code, bigger
    "gpu": dict(n_layer=8, n_embd=384, n_head=6, n_kv_head=3, block_size=384, vocab_size=1024,
                reader_steps=4000, reader_batch=32, reader_lr=1e-3, adapter_steps=600,
                adapter_lr=2e-3, serve_batch=128, rag_k=3, rag_chars=900),
}


def preset(name: str, **overrides) -> FactWorldConfig:
    """The named preset (smoke / tiny / gpu) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return FactWorldConfig(**{"preset": name, **PRESETS[name], **overrides})


# ---------------------------------------------------------------- the worlds and their questions


def train_world(cfg: FactWorldConfig) -> list[dict]:
    """week04's world ``train_seed`` with ``n_train`` countries (its first 120 are
    ``make_world(train_seed)``: the world grows by appending)."""
    return make_world(cfg.train_seed, max(cfg.n_train, 120))[: cfg.n_train]


def new_world(cfg: FactWorldConfig) -> list[dict]:
    """``n_new`` countries of week04's world ``new_seed`` whose name and capital are no name or
    capital of the train world (of its first ``max(n_train, 120)`` countries)."""
    taken = {v for c in make_world(cfg.train_seed, max(cfg.n_train, 120))
             for v in (c["name"], c["capital"])}
    fresh = [c for c in make_world(cfg.new_seed) if not {c["name"], c["capital"]} & taken]
    if len(fresh) < cfg.n_new:
        raise ValueError(f"world {cfg.new_seed} has only {len(fresh)} countries that clash with "
                         f"no train-world name; asked for n_new={cfg.n_new}")
    return fresh[: cfg.n_new]


def documents(world: list[dict], seed: int) -> list:
    """week04's fact documents (``make_fact_store(seed, n)``) of the countries in ``world``
    (drawn from the first ``max(len(world), 120)`` of world ``seed``)."""
    names = {c["name"].lower() for c in world}
    return [d for d in make_fact_store(seed, max(len(world), 120)) if d.name in names]


@dataclass
class Question:
    question: str  # "What is the capital of X?"
    query: str  # the search call's input: "capital of X"
    answer: str  # the taught sentence: "The capital of X is Y."
    value: str  # what exact match looks for: "Y"
    attribute: str
    country: str


def questions(world: list[dict], attributes=ATTRIBUTES) -> list[Question]:
    """Every (country, attribute) of ``world`` in week04's templates, country by country."""
    out = []
    for c in world:
        for attr in attributes:
            q, query, a = _FACT_QUESTIONS[attr]
            out.append(Question(q.format(n=c["name"]), query.format(n=c["name"]),
                                a.format(n=c["name"], v=c[attr]), str(c[attr]), attr, c["name"]))
    return out


def make_store(cfg: FactWorldConfig, docs) -> DocumentStore:
    """A DocumentStore over ``docs`` with the configured encoder (wrapped in a cache)."""
    encoder = MiniLMEncoder() if cfg.encoder == "minilm" else HashEncoder(256)
    store = DocumentStore(CachedEncoder(encoder), progress=cfg.progress)
    store.add_documents(docs)
    return store


def _warm(store: DocumentStore, qs: list[Question]) -> None:
    if isinstance(store.encoder, CachedEncoder):
        store.encoder.warm([q.question for q in qs] + [q.query for q in qs])


# ---------------------------------------------------------------- the reader's conversations


def _user(question: str, search: bool) -> list[dict]:
    msgs = [{"role": "user", "content": question}]
    return ([{"role": "system", "content": SEARCH_SYSTEM}] + msgs) if search else msgs


def _cited(q: Question, hits) -> str:
    """The answer citing the passage of q's country as [n] (no citation if none was found)."""
    n = next((i for i, h in enumerate(hits, 1) if h.source.split("#")[0] == q.country.lower()),
             None)
    return q.answer if n is None else f"{q.answer[:-1]} [{n}]."


def conversations(qs: list[Question], store: DocumentStore, cfg: FactWorldConfig,
                  kinds=KINDS) -> dict[str, list[list[dict]]]:
    """The reader's training conversations of each kind (see the module docstring)."""
    _warm(store, qs)
    tool = store.as_tool(k=cfg.rag_k, max_chars=cfg.rag_chars)
    hits = store.search_batch([q.question for q in qs], k=cfg.rag_k)
    out: dict[str, list[list[dict]]] = {}
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown conversation kind {kind!r}; valid: {KINDS}")
        convs = []
        for q, h in zip(qs, hits):
            if kind == "closed":
                convs.append(_user(q.question, False) + [{"role": "assistant", "content": q.answer}])
            elif kind == "search":
                parts = [{"type": "python", "text": f"search: {q.query}"},
                         {"type": "output", "text": tool.run(q.query)},
                         {"type": "text", "text": q.answer}]
                convs.append(_user(q.question, True) + [{"role": "assistant", "content": parts}])
            else:
                msgs = rag_messages(_user(q.question, kind == "both"), h, max_chars=cfg.rag_chars)
                convs.append(msgs + [{"role": "assistant", "content": _cited(q, h)}])
        out[kind] = convs
    return out


def training_text(convs: list[list[dict]]) -> str:
    """Every string of the conversations (week04's ``conversation_text``, joined)."""
    return "\n".join(conversation_text(c) for c in convs)


# ---------------------------------------------------------------- the reader and the adapter


def _cache_folder(cfg: FactWorldConfig, root=None) -> Path:
    return Path(root if root is not None else runs_root()) / CACHE_DIR / \
        f"{cfg.preset}-{cfg.reader_key()}"


def train_reader(cfg: FactWorldConfig, store: DocumentStore, root=None, cache: bool = True):
    """``(model, tokenizer, info)``: the reader base, trained on the train world (or loaded
    from ``runs_root()/week10-factworld/<preset>-<key>/`` when that folder holds it)."""
    folder = _cache_folder(cfg, root)
    ckpt, tok_path = folder / "model.safetensors", folder / "tokenizer.json"
    if cache and ckpt.exists() and tok_path.exists():
        return load_model(ckpt).eval(), BPETokenizer.load(tok_path), {"cached": str(folder)}
    convs = [c for cs in conversations(questions(train_world(cfg), cfg.attributes), store,
                                       cfg).values() for c in cs]
    tok = fit_tokenizer(convs, vocab_size=cfg.vocab_size)
    torch.manual_seed(cfg.seed)
    model = Llama(LlamaConfig(vocab_size=tok.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                              n_kv_head=cfg.n_kv_head, n_embd=cfg.n_embd,
                              block_size=cfg.block_size))
    losses = finetune(model, tok, convs, cfg.reader_steps, batch_size=cfg.reader_batch,
                      lr=cfg.reader_lr, seed=cfg.seed, log=False, progress=cfg.progress)
    info = {"conversations": len(convs), "final_loss": sum(losses[-20:]) / len(losses[-20:])}
    if cache:
        folder.mkdir(parents=True, exist_ok=True)
        tok.save(tok_path)  # week02's save is atomic
        save_model(ckpt, model.eval(), {"tokenizer": "tokenizer.json",
                                        "week10_factworld": asdict(cfg), **info})
    return model.eval(), tok, info


def train_fact_adapter(base, tokenizer, qs: list[Question], cfg: FactWorldConfig):
    """A copy of ``base`` with week06 LoRA ``"facts"`` trained closed-book on ``qs``."""
    model = inject_lora(copy.deepcopy(base), r=cfg.adapter_r, alpha=cfg.adapter_alpha,
                        adapter=ADAPTER)
    examples = [qa_example(tokenizer, q.question, q.answer) for q in qs]
    tc = ContinualConfig(steps_per_task=cfg.adapter_steps, batch_size=min(16, len(examples)),
                         lora_lr=cfg.adapter_lr, seed=cfg.seed)
    model.train()
    train_task(model, Task("new_facts", examples, examples), tc, random.Random(cfg.seed),
               lr=cfg.adapter_lr, progress=cfg.progress, desc="fact adapter")
    return model.eval()


# ---------------------------------------------------------------- exact match and the run


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def exact_match(reply_text: str, value: str) -> bool:
    """The gold value is a whole word (or words) of the reply, case and punctuation ignored."""
    return f" {_norm(value)} " in f" {_norm(reply_text)} " and bool(_norm(value))


def evaluate(hydra: Hydra, questions: list[str], answers: list[str], condition: str,
             attributes: list[str] | None = None, batch_size: int = 32,
             max_new_tokens: int = 128, progress: bool = True) -> dict:
    """Exact match of ``hydra``'s replies under ``condition`` (a key of ``CONDITIONS``):
    ``{"condition", "em", "n", "calls", "per_attribute", "examples"}``. ``calls`` is the
    fraction of replies that called a tool."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; valid: {list(CONDITIONS)}")
    if len(questions) != len(answers) or not questions:
        raise ValueError(f"need as many answers as questions (and at least one), got "
                         f"{len(questions)} questions and {len(answers)} answers")
    if attributes is not None and len(attributes) != len(questions):
        raise ValueError("attributes, when given, needs one label per question")
    c, hits, calls, examples = CONDITIONS[condition], [], 0, []
    for s in tqdm(range(0, len(questions), batch_size), desc=f"serve {condition}",
                  disable=not progress, unit="batch"):
        batch = questions[s:s + batch_size]
        reqs = [Request(_user(q, c.search), adapter=c.adapter, rag=c.rag,
                        max_new_tokens=max_new_tokens) for q in batch]
        for q, reply, gold in zip(batch, hydra.serve(reqs).run(), answers[s:s + batch_size]):
            ok = exact_match(reply.text, gold) and (c.search or not reply.calls)
            hits.append(ok)
            calls += bool(reply.calls)
            if len(examples) < 3:
                examples.append({"question": q, "reply": reply.raw, "gold": gold, "ok": ok})
    out = {"condition": condition, "em": sum(hits) / len(hits), "n": len(hits),
           "calls": calls / len(hits), "examples": examples, "per_attribute": {}}
    for attr in dict.fromkeys(attributes or []):
        mine = [h for h, a in zip(hits, attributes) if a == attr]
        out["per_attribute"][attr] = sum(mine) / len(mine)
    return out


@dataclass
class FactWorld:
    """What ``build`` makes: the worlds' questions, the store and the Hydra (reader + bank)."""
    cfg: FactWorldConfig
    train_questions: list[Question]
    new_questions: list[Question]
    store: DocumentStore
    hydra: Hydra
    info: dict


def build(cfg: FactWorldConfig, root=None, cache: bool = True) -> FactWorld:
    """Store (train world), reader (cached), fact adapter, then the new world's documents
    added to the store and one Hydra over all of it."""
    store = make_store(cfg, documents(train_world(cfg), cfg.train_seed))
    base, tok, info = train_reader(cfg, store, root, cache)
    new_qs = questions(new_world(cfg), cfg.attributes)
    bank = AdapterBank(base)
    bank.add_from_model(ADAPTER, train_fact_adapter(base, tok, new_qs, cfg), adapter=ADAPTER)
    store.add_documents(documents(new_world(cfg), cfg.new_seed))  # after the reader's data
    _warm(store, new_qs)
    hydra = Hydra(base, tok, bank, store=store, rag_k=cfg.rag_k, rag_chars=cfg.rag_chars)
    return FactWorld(cfg, questions(train_world(cfg), cfg.attributes), new_qs, store, hydra,
                     info)


def run(cfg: FactWorldConfig, root=None, cache: bool = True, conditions=tuple(CONDITIONS),
        n_train_eval: int = 0) -> dict:
    """Build the fact world and evaluate every condition on the new world (and, with
    ``n_train_eval``, on that many train-world questions: what the reader was taught)."""
    world = build(cfg, root, cache)
    kw = dict(batch_size=cfg.serve_batch, max_new_tokens=cfg.max_new_tokens,
              progress=cfg.progress)
    rows, qs = {}, world.new_questions
    seen = random.Random(cfg.seed).sample(world.train_questions,
                                          min(n_train_eval, len(world.train_questions)))
    for name in conditions:
        rows[name] = evaluate(world.hydra, [q.question for q in qs], [q.value for q in qs],
                              name, [q.attribute for q in qs], **kw)
        if seen:
            rows[name]["train_world_em"] = evaluate(
                world.hydra, [q.question for q in seen], [q.value for q in seen], name,
                **kw)["em"]
    return {"config": asdict(cfg), "reader": world.info, "rows": rows}


def markdown_table(result: dict) -> str:
    """The exact-match table: one row per condition; EM, n, tool-call rate, per attribute."""
    rows = result["rows"]
    attrs = list(next(iter(rows.values()))["per_attribute"])
    train = any("train_world_em" in r for r in rows.values())
    head = ["condition", "EM (new world)", "n", "calls", *attrs] + (["EM (train world)"] * train)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [name, f"{r['em']:.2f}", str(r["n"]), f"{r['calls']:.2f}",
                 *(f"{r['per_attribute'][a]:.2f}" for a in attrs)]
        if train:
            cells.append(f"{r['train_world_em']:.2f}" if "train_world_em" in r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
