"""``ChatEngine``: the chat model, its tools and its memory, behind the terminal, the page and the API.

``ChatEngine(model, tokenizer, tools, memory)`` wraps week10's ``Hydra`` (one
batch, week04's tool-calling decoding loop over week01's one decoding loop)
and adds what a conversation needs:

- a context that slides: ``fit`` drops the oldest turns (a system message
  stays) until the prompt and the reply's token budget fit the model's
  ``block_size``; a last user message longer than that keeps its end;
- events a person can read: ``stream`` turns the token stream into
  ``ChatEvent``s of kind ``"text"`` (the assistant's words), ``"call"`` (a
  tool call as the model writes it), ``"output"`` (the tool's answer, forced
  in) and ``"done"`` (with the request's ``ChatReply``), one request per
  conversation, all in one batch with one sampling setting (``Sampling``) and
  a seed per conversation (``seeds``; by default ``Sampling.seed`` plus the
  conversation's index): each row draws from its own generator (week01's
  ``Decoding(seeds=)``), so a seeded reply is the same alone or in any batch;
- stop strings: the reply is cut before the first one and its row leaves the
  batch (week10's ``Serving.cancel``); ``ChatStream.cancel(i)`` does the same
  for a client that went away;
- memory: with a ``memory`` (``week12_nanochat.memory.Memory``), each request
  asks ``memory.plan(question)`` which adapter answers and whether the taught
  facts are retrieved into the prompt, and the reply says which memory answered; a batch
  that decodes with the memory's adapters holds ``memory.serving`` to its last token, so the
  background job never swaps an adapter under a reply (``Memory.publishing``).

``find_model`` / ``load_chat`` locate and load the latest speedrun model
(``<runs>/speedrun*/chat.json``, written by the speedrun's last stage).

``stream(..., continuous=True)`` gives a ``ChatStream`` that takes more
conversations while it decodes (``ChatStream.add``: they join the running
batch at its next token, week10's ``Serving.add``; a request's ``done`` comes
when its own row ends), adapters and all (week10's ``Serving.add``).

Left out: other per-request sampling settings within one batch (temperature, top-p, top-k),
and the reasoning about a tool call's safety (the tools contain themselves: week04's sandbox).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shared import runs_root
from week04_modern_arch_tools import render_for_completion
from week04_modern_arch_tools.chat import special_ids
from week10_hydra.hydra import Hydra, Request

READY_FILE = "chat.json"  # <speedrun out>/chat.json: {"model": folder, "preset": ..., ...}


class NoModel(FileNotFoundError):
    """No chat model where one was looked for; the message says what to run."""


# ---------------------------------------------------------------- finding the model


def find_model(root: str | os.PathLike | None = None) -> Path:
    """The model folder of the newest finished speedrun under ``root`` (default: the runs
    folder, ``$NANOCHAT_RUNS`` or ``./runs``); ``$NANOCHAT_MODEL`` overrides."""
    if os.environ.get("NANOCHAT_MODEL"):
        return Path(os.environ["NANOCHAT_MODEL"])
    root = Path(root) if root is not None else runs_root()
    ready = sorted(root.glob(f"speedrun*/{READY_FILE}"), key=lambda p: p.stat().st_mtime)
    if not ready:
        raise NoModel(f"no finished speedrun under {root.resolve()}/: run `make speedrun` "
                      "(the cpu preset, about 15 minutes here) or pass --model PATH (a stage "
                      "folder with model.safetensors and tokenizer.json)")
    info = json.loads(ready[-1].read_text())
    path = Path(info["model"])
    return path if path.is_absolute() else ready[-1].parent / path


def load_chat(path: str | os.PathLike | None = None):
    """``(model in eval mode, tokenizer, path)`` of ``path`` or ``find_model()``."""
    from week09_alignment.common import load_start

    path = Path(path) if path is not None else find_model()
    if not path.exists():
        raise NoModel(f"{path} does not exist; give a speedrun stage folder (model.safetensors "
                      "+ tokenizer.json) or run `make speedrun`")
    model, tokenizer, _ = load_start(path, progress=False)
    return model.eval(), tokenizer, path


def open_engine(model: str | os.PathLike | None = None, memory: str | os.PathLike | None = None,
                repl: bool = True):
    """``(ChatEngine, model path)``: what the terminal and the server open. ``model``: a stage
    folder (default: the latest speedrun's model, ``NoModel`` saying what to run without one);
    ``memory``: a memory folder (``week12_nanochat.memory.Memory``), None for none; ``repl``:
    the sandboxed Python tool. A memory folder that does not open is a ``ValueError`` naming
    the folder and why."""
    m, tok, path = load_chat(model)
    mem = None
    if memory is not None:
        from week12_nanochat.memory import Memory, MemoryConfig

        try:  # no tqdm from the background job over the chat: /facts and the page show it
            mem = Memory(Path(memory), m, tok, MemoryConfig(progress=False))
        except Exception as e:  # a folder written by something else, an encoder not cached...
            raise ValueError(f"the memory in {memory} did not open ({type(e).__name__}: {e}); "
                             "give another memory folder or start without one") from e
    return ChatEngine(m, tok, tools=default_tools(repl=repl), memory=mem), path


def default_tools(repl: bool = True, world_seed: int = 0) -> dict:
    """The tools the speedrun trained with: week04's ``Calculator``, the sandboxed
    ``PythonREPL`` (left out, with no error, where the kernel cannot contain it: ask
    ``week04_modern_arch_tools.tools.isolation.support()`` why) and ``search`` over the
    generated world's facts (week04's ``fact_search``)."""
    from week04_modern_arch_tools import Calculator, fact_search

    tools = {"calculator": Calculator(), "search": fact_search(world_seed)}
    if repl:
        from week04_modern_arch_tools import PythonREPL
        from week04_modern_arch_tools.tools.isolation import support

        if support().kernel:
            tools["python"] = PythonREPL()
    return tools


# ---------------------------------------------------------------- requests, events, replies


@dataclass
class Sampling:
    """One batch's sampling (week01's ``sample_next``) and each reply's limits."""

    temperature: float = 0.0  # 0 = greedy
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int = 256  # every token of the reply, tool outputs included
    stop: tuple[str, ...] = ()  # the reply is cut before the first of these
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        self.stop = tuple(self.stop)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop must be non-empty strings, got {self.stop!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) \
                or self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be a positive int, got {self.max_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")

    def key(self) -> tuple:
        """Requests with the same key can share a batch."""
        return (self.temperature, self.top_p, self.top_k)  # not seed: each row has its own


@dataclass
class ChatReply:
    text: str  # what the assistant said (its words after the last tool output; stop applied)
    calls: list = field(default_factory=list)  # week04 ToolCalls (name, input, output)
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dropped: int = 0  # messages the sliding context left out
    adapter: object = None  # what served it (week10's resolved spec)
    memory: str | None = None  # which memory answered (memory.plan's label), if any
    sources: list = field(default_factory=list)  # retrieved passages (week10 hits)


@dataclass
class ChatEvent:
    request: int
    kind: str  # "text" | "call" | "output" | "done"
    text: str = ""
    reply: ChatReply | None = None  # on "done"


@dataclass
class _Row:
    """One request as it streams: which kind the next token belongs to."""

    kind: str = "text"
    answer: str = ""  # the assistant's text since the last tool output
    stopped: bool = False


class ChatStream:
    """One batch of conversations being answered; iterate for ``ChatEvent``s."""

    def __init__(self, engine: ChatEngine, serving, plans: list, dropped: list[int],
                 prompt_tokens: list[int], sampling: Sampling, tools: bool | list[str] = True,
                 held=None):
        self.engine, self.serving, self.sampling = engine, serving, sampling
        self._held = held  # the memory's ``serving`` lock while this batch decodes adapters
        self.plans, self.dropped, self.prompt_tokens = plans, dropped, prompt_tokens
        self.tools = tools
        self.rows = [_Row() for _ in plans]
        self.replies: list[ChatReply | None] = [None] * len(plans)

    def add(self, conversations, seeds: list[int] | None = None) -> list[int]:
        """Answer more conversations in this running batch (a stream made with
        ``continuous=True``): they join at the next token, with this stream's sampling and
        tools, each with its seed (``seeds``; default: ``Sampling.seed`` plus its request
        index) and the adapter the memory's plan gives it; their request indices.
        week01's ``CannotAdd`` when they cannot join (no room left in the cache): start a new
        batch."""
        memory = self.engine.memory
        grab = memory is not None and self._held is None
        if grab:  # a plan may give them adapters: hold them still from here on
            memory.serving.acquire()
        try:
            requests, plans, dropped, prompt_tokens = self.engine._requests(
                conversations, self.sampling, self.tools, seeds)
            rows = self.serving.add(requests)
        except BaseException:
            if grab:
                memory.serving.release()
            raise
        if grab and self.serving.uses_adapters:
            self._held = memory.serving
        elif grab:
            memory.serving.release()
        self.plans += plans
        self.dropped += dropped
        self.prompt_tokens += prompt_tokens
        self.rows += [_Row() for _ in plans]
        self.replies += [None] * len(plans)
        return rows

    def cancel(self, request: int) -> None:
        """Stop answering ``request`` (its row leaves the batch at its next token)."""
        self.serving.cancel(request)

    def _event(self, b: int, tok: int, text: str) -> list[ChatEvent]:
        """Row ``b``'s events for token ``tok``, whose new complete text is ``text`` (week10's
        ``StreamEvent.text``, decoded incrementally there: nothing is decoded twice)."""
        sp, row, out = self.engine.sp, self.rows[b], []
        kind = {sp["<|python_start|>"]: "call", sp["<|output_start|>"]: "output"}.get(tok)
        ends = tok in (sp["<|python_end|>"], sp["<|output_end|>"], sp["<|assistant_end|>"])
        special = tok in self.engine.special_set
        if special:  # its text is its name, after whatever bytes were pending before it
            text = text.removesuffix(self.engine.special_text[tok])
        if row.stopped:
            return out
        if text and row.kind == "text":
            stops = self.sampling.stop
            joined = row.answer + text
            cut = min((joined.find(s) for s in stops if s in joined), default=-1)
            if cut >= 0:
                text = joined[:cut][len(row.answer):]
                row.stopped = True
                self.serving.cancel(b)
            row.answer += text
        if text:
            out.append(ChatEvent(b, row.kind, text))
        if (kind is not None or ends) and not row.stopped:
            row.kind = kind or "text"
            if kind == "output":  # the answer is what the assistant says after the last output
                row.answer = ""
        return out

    def close(self) -> None:
        """Let go of the memory's adapters (the end of iteration does it too)."""
        held, self._held = self._held, None
        if held is not None:
            held.release()

    def __del__(self):  # a stream dropped before its end must not hold the adapters forever
        self.close()

    def __iter__(self) -> Iterator[ChatEvent]:
        try:
            yield from self._events()
        finally:
            self.close()

    def _events(self) -> Iterator[ChatEvent]:
        for e in self.serving:
            yield from self._event(e.request, e.token, e.text)
            if e.done:  # its row has ended: its reply now, not when the whole batch ends
                self.replies[e.request] = self._reply(e.request,
                                                      self.serving.reply(e.request))
                yield ChatEvent(e.request, "done", reply=self.replies[e.request])
        for b, reply in enumerate(self.serving.replies):  # rows the token limit ended
            if self.replies[b] is None:
                self.replies[b] = self._reply(b, reply)
                yield ChatEvent(b, "done", reply=self.replies[b])

    def _reply(self, b: int, r) -> ChatReply:
        row, plan = self.rows[b], self.plans[b]
        reason = "stop" if row.stopped else r.finish_reason
        return ChatReply(text=row.answer.strip(), calls=r.calls, finish_reason=reason,
                         prompt_tokens=self.prompt_tokens[b], completion_tokens=r.tokens,
                         dropped=self.dropped[b], adapter=r.adapter,
                         memory=getattr(plan, "label", None), sources=r.sources)

    def run(self) -> list[ChatReply]:
        for _ in self:
            pass
        return self.replies


# ---------------------------------------------------------------- the engine


class ChatEngine:
    """A chat model with tools (``{name: shared.Tool}``) and an optional memory."""

    def __init__(self, model, tokenizer, tools: dict | None = None, memory=None,
                 max_output_tokens: int = 128):
        self.model, self.tokenizer, self.memory = model.eval(), tokenizer, memory
        self.sp = special_ids(tokenizer)
        self.special_set = frozenset(self.sp.values())
        self.special_text = {i: name for name, i in self.sp.items()}
        self.tools = dict(tools or {})
        self.max_output_tokens = max_output_tokens
        self.block_size = model.config.block_size
        kw = {}
        if memory is not None:
            kw = dict(adapters=memory.library, store=memory.store,
                      router=getattr(memory, "router", None))
        self.hydra = Hydra(model, tokenizer, tools=self.tools, **kw)

    # -- the sliding context
    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return render_for_completion(messages, self.tokenizer)

    def fit(self, messages: list[dict], max_tokens: int, reserve: int = 0
            ) -> tuple[list[dict], int]:
        """``(messages that fit, how many were dropped)``: the oldest turns go first (a
        leading system message stays); the prompt leaves ``max_tokens`` of the block for the
        reply (a quarter of the block when ``max_tokens`` is larger) and ``reserve`` tokens for
        what the memory's retrieval will add to the prompt."""
        if not messages or messages[-1].get("role") != "user":
            raise ValueError("a conversation to answer ends with a user message")
        room = self.block_size - min(max_tokens, self.block_size // 4) - reserve
        system = [m for m in messages[:1] if m.get("role") == "system"]
        turns = messages[len(system):]
        dropped = 0

        def drop_one(turns, dropped):  # the oldest message, then up to the next user turn
            turns, dropped = turns[1:], dropped + 1
            while len(turns) > 1 and turns[0].get("role") != "user":
                turns, dropped = turns[1:], dropped + 1
            return turns, dropped

        if turns[0].get("role") != "user":
            turns, dropped = drop_one([{}] + turns, -1)
        while len(turns) > 1 and len(self.prompt_ids(system + turns)) > room:
            turns, dropped = drop_one(turns, dropped)
        kept = system + turns
        if len(self.prompt_ids(kept)) > room:  # one long message: keep its end
            if system:
                kept, dropped = turns, dropped + 1
            ids = self.tokenizer.encode(kept[-1]["content"])
            over = len(self.prompt_ids(kept)) - room
            kept = [*kept[:-1], {"role": "user",
                                 "content": self.tokenizer.decode(ids[over:])}]
        return kept, dropped

    # -- answering
    def stream(self, conversations, sampling: Sampling | None = None,
               tools: bool | list[str] = True, continuous: bool = False,
               seeds: list[int] | None = None) -> ChatStream:
        """Answer ``conversations`` (each a user string or a list of messages) in one batch,
        each sampled with its seed (``seeds``; default: ``sampling.seed`` plus its index);
        ``continuous=True``: the batch takes more while it runs (``ChatStream.add``)."""
        sampling = sampling or Sampling()
        held = self.memory.serving if self.memory is not None else None
        if held is not None:  # no adapter changes from the plan to the batch's last token
            held.acquire()
        try:
            requests, plans, dropped, prompt_tokens = self._requests(conversations, sampling,
                                                                     tools, seeds)
            if self.memory is not None:  # the memory may have rebuilt its store (a forget)
                self.hydra.store = self.memory.store
            serving = self.hydra.serve(requests, temperature=sampling.temperature,
                                       seed=sampling.seed, top_k=sampling.top_k,
                                       top_p=sampling.top_p, continuous=continuous)
        except BaseException:
            if held is not None:
                held.release()
            raise
        if held is not None and not serving.uses_adapters:  # it never reads them (yet)
            held.release()
            held = None
        return ChatStream(self, serving, plans, dropped, prompt_tokens, sampling, tools, held)

    def _requests(self, conversations, sampling: Sampling, tools: bool | list[str],
                  seeds: list[int] | None = None):
        """week10 ``Request``s for ``conversations``, with their memory plans, dropped
        message counts and prompt sizes (no seed: week10's ``Request.seed`` default, the
        batch's seed plus the request's index)."""
        if isinstance(conversations, (str, dict)) or (
                conversations and isinstance(conversations[0], dict)):
            conversations = [conversations]
        if seeds is None:
            seeds = [None] * len(conversations)
        if len(seeds) != len(conversations):
            raise ValueError(f"seeds must be one int per conversation: {len(conversations)} "
                             f"conversation(s), got {len(seeds)} seed(s)")
        requests, plans, dropped, prompt_tokens = [], [], [], []
        names = list(self.tools) if tools is True else [] if tools is False else list(tools)
        for conv, seed in zip(conversations, seeds):
            conv = [{"role": "user", "content": conv}] if isinstance(conv, str) else list(conv)
            if not conv or not isinstance(conv[-1].get("content"), str):
                raise ValueError("a conversation ends with a user message whose content is text")
            plan = self.memory.plan(conv[-1]["content"]) if self.memory is not None else None
            # room for what the plan adds to the prompt (retrieved passages)
            kept, n = self.fit(conv, sampling.max_tokens, int(getattr(plan, "reserve", 0)))
            requests.append(Request(kept, adapter=getattr(plan, "adapter", None),
                                    rag=bool(getattr(plan, "rag", False)),
                                    max_new_tokens=sampling.max_tokens, tools=names,
                                    seed=seed))
            plans.append(plan)
            dropped.append(n)
            prompt_tokens.append(len(self.prompt_ids(kept)))
        return requests, plans, dropped, prompt_tokens

    def reply(self, conversation, sampling: Sampling | None = None,
              tools: bool | list[str] = True) -> ChatReply:
        """One conversation, answered."""
        return self.stream([conversation], sampling, tools).run()[0]

    def close(self) -> None:
        """Close the memory (its job finishes or checkpoints) and the tools (the REPL)."""
        if self.memory is not None:
            self.memory.close()
        for tool in self.tools.values():
            if hasattr(tool, "close"):
                tool.close()
