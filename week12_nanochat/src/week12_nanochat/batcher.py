"""``Batcher``: one decoding thread owns the model; requests wait in a queue and share batches.

Clients (the API's request handlers, on the server's event loop, or plain threads) call
``Batcher.submit(conversation, sampling, tools, n)`` and get a ``Ticket``. The decoding
thread takes what is waiting (up to ``batch_size`` rows, waiting at most ``gather_ms`` for
more after the first), groups the tickets that can share a batch (``Sampling.key()`` and,
because ``ChatEngine.stream`` takes one ``Sampling`` and one tool set per batch, the same
``max_tokens``, ``stop`` and tools; not the seed), and answers each group as ONE
``engine.stream(...)`` batch, each ticket's rows with their own seeds (``Sampling.seed``
plus the choice's index), routing every ``ChatEvent`` to its ticket's own queue (a
``queue.Queue`` for a thread; for a coroutine an ``asyncio.Queue`` fed through
``loop.call_soon_threadsafe``). ``n > 1`` is n rows of the same conversation in the batch
(sampled, the rows differ: seeds ``seed`` to ``seed + n - 1``). A ticket whose client went
away calls ``Ticket.cancel()``: a waiting ticket never enters a batch, a decoding one's rows
leave their batch at their next token (week10's ``Serving.cancel``).

Where batching stands: continuous batching at token granularity (``BatchConfig.continuous``,
on by default). A batch is a continuous ``engine.stream(..., continuous=True)``: between any
two of its tokens the decoding thread looks at the queue, and tickets of the batch's key
that fit its free rows (``batch_size`` minus the rows still decoding) join it at its next
step (``ChatStream.add``: week01's ``Decoding.add`` prefills them on their own and joins
their KV cache to the running one, without paging; one the memory serves with an adapter
joins too, week10's adapter plan growing by its row). A ticket that cannot join (another key,
no free row, no room left in the batch's cache before ``block_size``) waits for the next batch, as does one that arrives when the last
row of a batch has ended (a new batch starts with a fresh cache). ``Batcher.joined`` counts
the rows that joined a running batch. Every row ends on its own: a ticket
hears its ``done`` (usage, finish reason) and its end when its own rows end, not when the
batch does. Replies are the same as alone, greedy or sampled: every row draws from a
generator of its own (week01's ``Decoding(seeds=)``), so a ticket's seed, not its
neighbours, decides its reply, and tickets with different seeds share a batch.
``continuous=False`` is the request-level batching this replaced: a batch only shrinks, and
a request that arrives while it decodes waits for the next one.

Left out: priorities and fairness between clients (first come, first served), a bound on
how long a request waits (the server bounds the queue's length instead), and preemption.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from week01_transformer.decoding import CannotAdd
from week12_nanochat.engine import ChatEvent, Sampling

# ---------------------------------------------------------------- config and tickets


@dataclass
class BatchConfig:
    batch_size: int = 8  # rows per batch (a ticket with n choices takes n rows)
    gather_ms: float = 5.0  # after the first request, wait at most this long for more
    max_queue: int = 256  # tickets waiting; beyond this ``submit`` refuses (the server: 503)
    continuous: bool = True  # waiting tickets join a running batch at its next token
    stream_interval_ms: float = 0.0  # a loop's streams wake at most this often (LoopWaker)

    def __post_init__(self):
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) \
                or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.gather_ms < 0:
            raise ValueError(f"gather_ms must be >= 0, got {self.gather_ms}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        if not 0 <= self.stream_interval_ms <= 1000:
            raise ValueError(f"stream_interval_ms must be in [0, 1000], got "
                             f"{self.stream_interval_ms}")


class QueueFull(RuntimeError):
    """Too many requests waiting; the message says how many may."""


DONE = "end"  # the last item of a ticket's queue: ("end", None)


class LoopWaker:
    """Wakes the tickets of one event loop with ONE ``call_soon_threadsafe`` per burst, at
    most once every ``interval_s`` (the stream interval).

    ``call_soon_threadsafe`` writes to the loop's self-pipe (a system call); one per ticket
    per token cost the decoding thread 17% of its time at 8 streaming clients (py-spy, the
    load benchmark). Tickets put their items, then ``notify``; the first notify of a burst
    schedules ``_run`` on the loop, which wakes every ticket notified until it runs. With
    ``interval_s`` > 0 a wake-up comes no sooner than that after the last one, so each
    client's stream writes the tokens of that interval in one chunk of SSE events (vLLM's
    ``--stream-interval`` in time): the loop's work per token, which holds the GIL the
    decoding thread needs, is shared by the tokens of a write."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float = 0.0):
        self.loop, self.interval_s = loop, interval_s
        self._lock = threading.Lock()
        self._pending: dict[int, Ticket] = {}  # ticket id -> ticket, in notify order
        self._armed = False
        self._last = float("-inf")  # loop time of the last wake-up

    def notify(self, ticket: Ticket) -> None:
        with self._lock:
            self._pending[ticket.id] = ticket
            if self._armed:
                return
            self._armed = True
        try:
            self.loop.call_soon_threadsafe(self._schedule)
        except RuntimeError:  # the loop is gone: nobody listens
            pass

    def _schedule(self) -> None:  # on the loop
        wait = self.interval_s - (self.loop.time() - self._last)
        if wait > 0:
            self.loop.call_later(wait, self._run)
        else:
            self._run()

    def _run(self) -> None:  # on the loop
        self._last = self.loop.time()
        with self._lock:
            tickets, self._pending, self._armed = self._pending, {}, False
        for t in tickets.values():
            t._ready.set()


@dataclass
class Ticket:
    """One request in the batcher: its rows' events arrive as ``(choice, ChatEvent)`` items,
    then ``("error", exception)`` if its batch failed, and always ``(DONE, None)`` last."""

    id: int
    conversation: list
    sampling: Sampling
    tools: bool | tuple = True
    n: int = 1
    loop: asyncio.AbstractEventLoop | None = None
    waker: LoopWaker | None = None  # the loop's (``Batcher.submit`` shares one per loop)
    replies: list = field(default_factory=list)  # ChatReply per choice, once done
    batch: int | None = None  # which batch answered it (Batcher.batches counts them)
    batch_rows: int = 0  # how many rows that batch had
    cancelled: bool = False

    def __post_init__(self):
        self.replies = [None] * self.n
        self._q: queue.Queue = queue.Queue()  # thread consumers
        self._buf: deque = deque()  # loop consumers: items, and one wake-up per burst
        self._ready = asyncio.Event() if self.loop is not None else None
        if self.loop is not None and self.waker is None:
            self.waker = LoopWaker(self.loop)
        self._lock = threading.Lock()
        self._stream, self._rows = None, []

    def key(self) -> tuple:
        s = self.sampling
        return (s.key(), s.max_tokens, s.stop, self.tools)

    def _put(self, item) -> None:
        if self.loop is None:
            self._q.put(item)
            return
        self._buf.append(item)
        self.waker.notify(self)  # one wake-up of the loop for every ticket put before it runs

    def _attach(self, stream, rows: list[int]) -> None:
        with self._lock:
            self._stream, self._rows = stream, rows
            if self.cancelled:
                for r in rows:
                    stream.cancel(r)

    def cancel(self) -> None:
        """The client went away: free the rows (at their next token) or the queue place."""
        with self._lock:
            self.cancelled = True
            if self._stream is not None:
                for r in self._rows:
                    self._stream.cancel(r)

    def get(self, timeout: float | None = None):
        """The next item (thread consumers)."""
        return self._q.get(timeout=timeout)

    async def aget_many(self) -> list:
        """Every item that has arrived, at least one (consumers on ``loop``)."""
        while True:
            if self._buf:
                return [self._buf.popleft() for _ in range(len(self._buf))]
            self._ready.clear()
            if not self._buf:
                await self._ready.wait()

    def __iter__(self):
        """Thread consumers: ``(choice, ChatEvent)`` until done (a batch's error is raised)."""
        while True:
            kind, item = self.get()
            if kind == DONE:
                return
            if kind == "error":
                raise item
            yield kind, item


# ---------------------------------------------------------------- the batcher


class Batcher:
    """The decoding thread and its queue over one ``ChatEngine``."""

    def __init__(self, engine, config: BatchConfig | None = None):
        self.engine, self.config = engine, config or BatchConfig()
        self._q: queue.Queue = queue.Queue()
        self._carry: deque = deque()  # taken from the queue but not fitting the last batch
        self._ids = itertools.count()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wakers: dict[int, LoopWaker] = {}  # id(loop) -> its waker
        self.batches = 0  # batches run
        self.rows = 0  # rows decoded
        self.joined = 0  # rows that joined a batch already decoding (continuous batching)
        self.tickets = 0  # tickets that entered a batch
        self.beside = 0  # the sum of their batch_rows (rows decoding in the batch they entered)
        self.finished: deque = deque(maxlen=256)  # the latest tickets answered (for tests)

    # -- life
    def start(self) -> Batcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="nanochat-batcher",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop after the batch that is decoding; waiting tickets end with an error."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for t in list(self._carry) + self._drain():
            t._put(("error", RuntimeError("the server is shutting down")))
            t._put((DONE, None))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _drain(self) -> list[Ticket]:
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out

    @property
    def waiting(self) -> int:
        return self._q.qsize() + len(self._carry)

    # -- clients
    def submit(self, conversation, sampling: Sampling | None = None, tools=True, n: int = 1,
               loop: asyncio.AbstractEventLoop | None = None) -> Ticket:
        """Queue one request (a user string or a message list) with ``n`` choices; pass the
        running ``loop`` to consume it with ``await ticket.aget()``."""
        if self._closed.is_set():
            raise RuntimeError("the batcher is closed")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.config.batch_size:
            raise ValueError(f"n must be an int from 1 to the batch size "
                             f"{self.config.batch_size}, got {n!r}")
        if self.waiting >= self.config.max_queue:
            raise QueueFull(f"{self.waiting} requests are waiting (at most "
                            f"{self.config.max_queue}); try again shortly")
        conv = [{"role": "user", "content": conversation}] if isinstance(conversation, str) \
            else list(conversation)
        tools = tools if isinstance(tools, bool) else tuple(tools)
        waker = None
        if loop is not None:
            with self._lock:
                waker = self._wakers.get(id(loop))
                if waker is None or waker.loop is not loop:
                    waker = self._wakers[id(loop)] = LoopWaker(
                        loop, self.config.stream_interval_ms / 1000)
        ticket = Ticket(next(self._ids), conv, sampling or Sampling(), tools, n, loop, waker)
        self._q.put(ticket)
        return ticket

    # -- the decoding thread
    def _gather(self) -> list[Ticket]:
        """What is waiting, up to ``batch_size`` rows (the first blocks; then gather_ms)."""
        got, rows = [], 0

        def take(t: Ticket) -> bool:
            nonlocal rows
            if t.cancelled:
                t._put((DONE, None))
                return True
            if got and rows + t.n > self.config.batch_size:
                self._carry.append(t)
                return False
            got.append(t)
            rows += t.n
            return True

        while self._carry and rows < self.config.batch_size:
            if not take(self._carry.popleft()):
                break
        if not got:
            try:
                take(self._q.get(timeout=0.05))
            except queue.Empty:
                return got
        deadline = time.monotonic() + self.config.gather_ms / 1000
        while rows < self.config.batch_size:
            left = deadline - time.monotonic()
            try:
                t = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if not take(t):
                break
        return got

    def _loop(self) -> None:
        while not self._closed.is_set():
            tickets = self._gather()
            groups: dict[tuple, list[Ticket]] = {}
            for t in tickets:
                groups.setdefault(t.key(), []).append(t)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[Ticket]) -> None:
        convs, owner = [], []  # owner[row] = (ticket, choice)
        for t in group:
            for j in range(t.n):
                convs.append(t.conversation)
                owner.append((t, j))
        batch = self.batches
        self.batches += 1
        self.rows += len(convs)
        first = group[0]
        done: dict[int, int] = {}  # ticket id -> choices done
        ended: set[int] = set()  # tickets that heard their end
        refused: set[int] = set()  # tickets this batch could not take
        try:
            kw = {"continuous": True} if self.config.continuous else {}
            stream = self.engine.stream(convs, first.sampling, tools=first.tools, **kw,
                                        seeds=[t.sampling.seed + j for t, j in owner])
            row = 0
            for t in group:
                t.batch, t.batch_rows = batch, len(convs)
                t._attach(stream, list(range(row, row + t.n)))
                row += t.n
            self.tickets += len(group)
            self.beside += len(group) * len(convs)
            joins = self.config.continuous and hasattr(stream, "add")
            for e in stream:
                t, j = owner[e.request]
                if e.kind == "done":
                    t.replies[j] = e.reply
                t._put((j, ChatEvent(j, e.kind, e.text, e.reply)))
                if e.kind == "done":
                    done[t.id] = done.get(t.id, 0) + 1
                    if done[t.id] == t.n:  # its rows have all ended: it needs the batch no more
                        ended.add(t.id)
                        self.finished.append(t)
                        t._put((DONE, None))
                live = len(owner) - sum(done.values())
                if joins and live and (self._carry or self._q.qsize()):  # (0: it is ending)
                    group += self._join(stream, first.key(), live, owner, batch, refused)
        except Exception as exc:  # the batch failed: every client of it hears why
            for t in group:
                if t.id not in ended:
                    t._put(("error", exc))
        for t in group:
            if t.id not in ended:
                self.finished.append(t)
                t._put((DONE, None))

    def _join(self, stream, key: tuple, live: int, owner: list, batch: int,
              refused: set[int]) -> list[Ticket]:
        """Put the waiting tickets of ``key`` that fit the batch's free rows into the running
        ``stream`` (the others wait, in order); the tickets that joined."""
        waiting, joined = list(self._carry) + self._drain(), []
        self._carry.clear()
        for t in waiting:
            if t.cancelled:
                t._put((DONE, None))
                continue
            if t.key() != key or t.id in refused or live + t.n > self.config.batch_size:
                self._carry.append(t)
                continue
            try:
                rows = stream.add([t.conversation] * t.n,
                                  seeds=[t.sampling.seed + j for j in range(t.n)])
            except CannotAdd:  # no room left in its cache: the next batch
                refused.add(t.id)
                self._carry.append(t)
                continue
            except Exception as exc:  # its request failed, not the batch: it hears why
                t._put(("error", exc))
                t._put((DONE, None))
                continue
            for j in range(t.n):
                owner.append((t, j))
            live += t.n
            self.rows += t.n
            self.joined += t.n
            t.batch, t.batch_rows = batch, live
            self.tickets += 1
            self.beside += live
            t._attach(stream, rows)
            joined.append(t)
        return joined
