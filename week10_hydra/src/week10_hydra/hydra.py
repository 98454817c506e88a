"""``Hydra``: one frozen base, many adapter heads, a document store and tools, in one batch.

``Hydra(base, tokenizer, adapters, store, tools)`` answers chat requests. Each
request names its own adapter: ``None`` (the bare base), a name (nested names
such as ``"domain/task/user"`` resolve to their whole chain through the
library), a weighted stack (``[("a", 0.7), ("b", 0.3)]`` or ``{"a": 0.7}``),
``"auto"`` (the per-request prototype router picks one, or the base when no
prototype is close) or ``"arrow"`` (per-token routing over the library's
adapters), and which of Hydra's tools it may call (all by default). ``rag=True`` retrieves passages for the request's last user message
and renders them into the conversation with numbered citations; the store
also answers the ``search`` tool, so a model that calls ``search: ...`` reads
the same documents.

``serve(requests)`` puts every request in one batch: one adapter plan (the
bank gathers each row's adapters), one run of week04's tool-calling decoding
loop (week01's ``Decoding``: prefill, one token per row per step, tool outputs
forced, rows finishing at different steps, the plan following the rows that
stay). Iterating the returned ``Serving`` yields ``StreamEvent``s (request,
text delta, done) as tokens are made: what week12's server streams. When it
ends, ``serving.replies`` holds one ``Reply`` per request. ``chat`` is
``serve`` for one request.

``serve(..., continuous=True)`` gives a ``Serving`` that takes more requests
while it decodes (``Serving.add``, week01's ``Decoding.add``): they join at the
next step, each streaming from then on and ending at its own limit
(``Serving.reply(i)`` is a request's reply as soon as its row is done).

Requests with adapters join too: their prefill runs under a plan of their own
rows (week01's ``on_join``), then the batch's plan grows by them
(``Plan.extend``), so a joined row makes the tokens it makes alone (greedy).

Each request samples from a generator of its own (week01's ``Decoding(seeds=)``),
seeded with ``Request.seed`` (by default ``serve``'s seed plus the request's index
in the batch): a request with a seed makes the same reply alone or beside any
others, joined late or not.

Left out: other per-request sampling settings within a batch (temperature, top-k,
top-p: requests that differ are served in separate batches) and speculative
decoding.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from week01_transformer.decoding import CannotAdd
from week04_modern_arch_tools import ToolDecoding
from week04_modern_arch_tools.chat import ToolCall, special_ids
from week10_hydra.bank import AdapterBank, ArrowSpec
from week10_hydra.library import BudgetError
from week10_hydra.rag import rag_messages

ROUTED = ("auto", "arrow")


# ---------------------------------------------------------------- requests and replies


@dataclass
class Request:
    """One chat request: a user message or a conversation, and what serves it."""

    messages: str | list[dict]
    adapter: object = None  # None | name | stack | "auto" | "arrow"
    rag: bool = False
    max_new_tokens: int = 128
    tools: list[str] | None = None  # the tools this request may call (None: all of Hydra's)
    seed: int | None = None  # its sampling seed (None: serve's seed + its index in the batch)

    def __post_init__(self):
        if isinstance(self.messages, str):
            self.messages = [{"role": "user", "content": self.messages}]
        if not isinstance(self.messages, list) or not self.messages:
            raise ValueError("a request's messages are a user message (str) or a non-empty list "
                             "of {'role', 'content'} dicts")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}")
        if self.tools is not None and (isinstance(self.tools, str) or not all(
                isinstance(t, str) for t in self.tools)):
            raise ValueError(f"a request's tools are a list of tool names, got {self.tools!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed,
                                                                                    int)):
            raise ValueError(f"a request's seed is an int or None, got {self.seed!r}")


@dataclass
class StreamEvent:
    request: int
    token: int
    text: str  # the new text this token completes (may be "" mid-character)
    forced: bool  # a tool's output, not sampled
    done: bool


@dataclass
class Reply:
    """A request's answer: the assistant's final text, the raw text with tool calls, and
    what served it (the resolved adapter stack, the retrieved sources, the tool calls)."""

    text: str
    raw: str
    adapter: list[tuple[str, float]] | str | None
    sources: list = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    finished: bool = False  # the model ended its turn (<|assistant_end|>)
    tokens: int = 0
    finish_reason: str = "length"  # "stop": the model ended it; "length": the token limit;
    # "cancelled": Serving.cancel ended it


def _request(r) -> Request:
    return r if isinstance(r, Request) else Request(**r) if isinstance(r, dict) else Request(r)


def _last_user(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    raise ValueError("a request needs a user message with string content")


# ---------------------------------------------------------------- decoding with limits


class _LimitedDecoding(ToolDecoding):
    """week04's tool decoding with a per-row token limit (a row past it finishes) and a
    per-row tool set (a call to a tool the row was not given answers week04's "unknown
    tool" error, as any unknown tool does)."""

    def __init__(self, *args, limits: list[int], row_tools: list[dict], **kwargs):
        self.limits, self.row_tools = limits, row_tools
        self.cancelled: set[int] = set()
        super().__init__(*args, **kwargs)

    def _on_token(self, b: int, tok: int, forced: bool):
        self.tools = self.row_tools[b]
        said = super()._on_token(b, tok, forced)
        if b in self.cancelled or len(self.decoding.rows[b].ids) >= self.limits[b]:
            return True
        return said


class Serving:
    """One batch being decoded; iterate for ``StreamEvent``s, then read ``replies``."""

    def __init__(self, hydra: Hydra, requests: list[Request], temperature: float, seed: int,
                 top_k: int | None = None, top_p: float | None = None,
                 continuous: bool = False):
        self.hydra, self.requests, self.seed = hydra, requests, seed
        tok = hydra.tokenizer
        self.stacks = hydra._route(requests)
        self.sources = hydra._retrieve(requests)
        conversations = [hydra.render_rag(r.messages, hits) if r.rag else r.messages
                         for r, hits in zip(requests, self.sources)]
        self.plan = hydra._plan(self.stacks)
        if continuous and self.plan is None:  # rows with adapters may join: a plan to grow
            self.plan = hydra.bank.plan([None] * len(requests))
        self.continuous = continuous
        limits = [r.max_new_tokens for r in requests]
        self._ctx = hydra.bank.use(self.plan)
        self.decoding = _LimitedDecoding(
            hydra.base, tok, conversations, hydra.tools, max_new_tokens=max(limits),
            temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, limits=limits,
            row_tools=[hydra._tools_for(r) for r in requests], seeds=self._seeds(requests, 0),
            on_keep=None if self.plan is None else self.plan.keep, continuous=continuous)
        if self.decoding.decoding is not None:
            self.decoding.decoding.on_join = self._joining
        self.replies: list[Reply] = []
        self._texts = [""] * len(requests)
        self._bytes = getattr(tok, "token_to_bytes", None)  # incremental text, when it has it
        self._decoders = [self._decoder() for _ in requests]

    @property
    def uses_adapters(self) -> bool:
        """Whether any request of this batch (joined ones included) decodes with an adapter."""
        return any(s is not None for s in self.stacks)

    def add(self, requests) -> list[int]:
        """Put more requests (as ``Hydra.serve`` takes them, adapters and all) into this
        running batch; their indices. They join at the next step: their prefill runs with
        their own adapters, then the batch's plan grows by their rows (``Plan.extend``).
        week01's ``CannotAdd`` when they cannot: no room in the cache, a batch not made
        ``continuous``, or adapters that do not fit the library's budget beside the batch's."""
        reqs = [_request(r) for r in requests]
        if not reqs:
            raise ValueError("add needs at least one request")
        stacks = self.hydra._route(reqs)
        if self.plan is None and any(s is not None for s in stacks):
            raise CannotAdd("this batch was not served continuous=True: requests with "
                            "adapters cannot join it; serve them in a new batch")
        lib = self.hydra.library
        if lib is not None and any(s is not None for s in stacks):
            live = [s for s in self.stacks + stacks if s is not None and s != "arrow"]
            try:  # every adapter of the batch and the newcomers in the bank together
                lib.ensure([n for spec in live for n, _ in lib.resolve_stack(spec)])
            except BudgetError as e:
                raise CannotAdd(f"the joining adapters do not fit beside the batch's: {e}") from e
        row_tools = [self.hydra._tools_for(r) for r in reqs]
        sources = self.hydra._retrieve(reqs)
        conversations = [self.hydra.render_rag(r.messages, hits) if r.rag else r.messages
                         for r, hits in zip(reqs, sources)]
        d = self.decoding
        rows = d.add(conversations, max_new_tokens=max(r.max_new_tokens for r in reqs),
                     seeds=self._seeds(reqs, len(self.requests)))
        d.limits += [r.max_new_tokens for r in reqs]
        d.row_tools += row_tools
        self.requests += reqs
        self.stacks += stacks
        self.sources += sources
        self._texts += [""] * len(reqs)
        self._decoders += [self._decoder() for _ in reqs]
        return rows

    def _seeds(self, requests: list[Request], first: int) -> list[int]:
        """Each request's generator seed: its own, else the batch's seed + its index."""
        return [self.seed + first + i if r.seed is None else r.seed
                for i, r in enumerate(requests)]

    @contextmanager
    def _joining(self, rows: list[int]):
        """week01's ``on_join``: the joining rows prefill under their own plan, then this
        batch's plan grows by them."""
        new = self.hydra._plan([self.stacks[r] for r in rows])
        if new is None:
            new = self.hydra.bank.plan([None] * len(rows))
        with self.hydra.bank.use(new):
            yield
        self.plan.extend(new)

    def _decoder(self):
        return codecs.getincrementaldecoder("utf-8")(errors="replace") if self._bytes else None

    def _delta(self, b: int, tok: int, last: bool) -> str:
        """The new, complete text of row b since the last event (UTF-8 safe: a character
        split across tokens waits for its rest, unless this is the row's last event). With
        the tokenizer's ``token_to_bytes`` only the new token is decoded (an incremental
        UTF-8 decoder per row); else the row's whole text, less what was said."""
        dec = self._decoders[b]
        if dec is not None:
            return dec.decode(self._bytes(tok), final=last)
        ids = self.decoding.decoding.rows[b].ids
        text = self.hydra.tokenizer.decode(ids)
        if text.endswith("\ufffd") and not last:
            return ""
        new, self._texts[b] = text[len(self._texts[b]):], text
        return new

    def cancel(self, request: int) -> None:
        """Finish request ``request`` at its next token (a client that went away): its row
        leaves the batch, so the others decode at the speed of a smaller batch, and its
        reply ends with ``finish_reason="cancelled"``."""
        if not 0 <= request < len(self.requests):
            raise ValueError(f"no request {request} in this batch of {len(self.requests)}")
        self.decoding.cancelled.add(request)

    def __iter__(self) -> Iterator[StreamEvent]:
        with self._ctx:
            for events in self.decoding:
                for e in events:
                    yield StreamEvent(e.row, e.token, self._delta(e.row, e.token, e.done), e.forced,
                                      e.done)
        self._finish()

    def reply(self, i: int) -> Reply:
        """Request ``i``'s reply as it stands (final once its row is done)."""
        d = self.decoding
        run, row = d.runs[i], d.decoding.rows[i]
        run.ids, run.forced, run.finished = row.ids, row.forced, row.finished  # as week04 will
        ended = row.finished and row.stop != "hook"  # "hook": cut by the token limit
        reason = "stop" if ended else "length"
        if i in d.cancelled and not ended:
            reason = "cancelled"
        return Reply(text=run.answer(self.hydra.tokenizer).strip(),
                     raw=self.hydra.tokenizer.decode(row.ids), adapter=self.stacks[i],
                     sources=self.sources[i], calls=run.calls, finished=ended,
                     tokens=len(row.ids), finish_reason=reason)

    def _finish(self) -> None:
        self.replies = [self.reply(i) for i in range(len(self.requests))]

    def run(self) -> list[Reply]:
        for _ in self:
            pass
        return self.replies


# ---------------------------------------------------------------- Hydra


class Hydra:
    """A frozen base with an adapter library (or bare bank), a document store and tools."""

    def __init__(self, base, tokenizer, adapters=None, store=None, tools: dict | None = None,
                 router=None, arrow: ArrowSpec | None = None, rag_k: int = 3,
                 rag_chars: int = 1200):
        special_ids(tokenizer)  # a clear error if the tokenizer cannot chat
        self.base, self.tokenizer = base.eval(), tokenizer
        if adapters is None:
            adapters = AdapterBank(base)
        self.library = None if isinstance(adapters, AdapterBank) else adapters
        self.bank = adapters if isinstance(adapters, AdapterBank) else adapters.bank
        if self.bank.model is not base:
            raise ValueError("the adapter bank must be hooked on this base model "
                             "(AdapterBank(base))")
        self.store, self.router, self.arrow = store, router, arrow
        self.rag_k, self.rag_chars = rag_k, rag_chars
        self.tools = dict(tools or {})
        if store is not None and "search" not in self.tools:
            self.tools["search"] = store.as_tool(k=rag_k, max_chars=rag_chars)

    # -- what serves each request
    def _route(self, requests: list[Request]) -> list:
        """Each request's adapter spec, with "auto" decided by the prototype router."""
        specs = [r.adapter for r in requests]
        auto = [i for i, s in enumerate(specs) if isinstance(s, str) and s == "auto"]
        if auto:
            if self.router is None:
                raise ValueError("adapter='auto' needs Hydra(router=...), a per-request router "
                                 "(week10_hydra.routing.PrototypeRouting)")
            picks = self.router.route([_last_user(requests[i].messages) for i in auto])
            for i, name in zip(auto, picks):
                specs[i] = name
        if any(isinstance(s, str) and s == "arrow" for s in specs) and self.arrow is None:
            raise ValueError("adapter='arrow' needs Hydra(arrow=ArrowSpec(names, top_k))")
        return specs

    def _tools_for(self, request: Request) -> dict:
        if request.tools is None:
            return self.tools
        unknown = [t for t in request.tools if t not in self.tools]
        if unknown:
            raise ValueError(f"request asks for tools {unknown} that this Hydra lacks; it has "
                             f"{sorted(self.tools)}")
        return {t: self.tools[t] for t in request.tools}

    def _plan(self, specs: list):
        if all(s is None for s in specs):
            return None
        if self.library is not None:
            return self.library.plan(specs, arrow=self.arrow)
        return self.bank.plan(specs, arrow=self.arrow)

    def _retrieve(self, requests: list[Request]) -> list[list]:
        """The passages of every request with ``rag=True`` (one batched search), else []."""
        asks = [i for i, r in enumerate(requests) if r.rag]
        out: list[list] = [[] for _ in requests]
        if asks:
            if self.store is None:
                raise ValueError("rag=True needs Hydra(store=...), a week10 DocumentStore")
            found = self.store.search_batch([_last_user(requests[i].messages) for i in asks],
                                            k=self.rag_k)
            for i, hits in zip(asks, found):
                out[i] = hits
        return out

    def render_rag(self, messages: list[dict], hits) -> list[dict]:
        """The conversation with the passages and the citation instruction in its last user
        message (``week10_hydra.rag.rag_messages``)."""
        return rag_messages(messages, hits, max_chars=self.rag_chars)

    # -- serving
    def serve(self, requests, temperature: float = 0.0, seed: int = 0, top_k: int | None = None,
              top_p: float | None = None, continuous: bool = False) -> Serving:
        """One batch for ``requests`` (``Request``s, or dicts / strings that make one), sampled
        with one setting (week01's ``sample_next``: greedy at temperature 0);
        ``continuous=True``: the batch takes more requests while it runs (``Serving.add``)."""
        reqs = [_request(r) for r in requests]
        if not reqs:
            raise ValueError("serve needs at least one request")
        return Serving(self, reqs, temperature, seed, top_k=top_k, top_p=top_p,
                       continuous=continuous)

    def chat(self, messages, adapter=None, rag: bool = False, max_new_tokens: int = 128,
             temperature: float = 0.0, seed: int = 0, tools: list[str] | None = None) -> Reply:
        """One request, answered: ``serve([...]).run()[0]``."""
        req = Request(messages, adapter=adapter, rag=rag, max_new_tokens=max_new_tokens,
                      tools=tools)
        return self.serve([req], temperature=temperature, seed=seed).run()[0]
