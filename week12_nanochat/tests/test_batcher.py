"""``Batcher``: requests that wait together are answered as one ``engine.stream`` batch (the
same replies as that batch run directly), settings that cannot share a batch run apart, a
cancelled ticket frees its row at once, the limits refuse clearly, and (continuous batching)
a request that arrives while a batch decodes joins it at its next token."""

import threading

import pytest

from week12_nanochat.batcher import DONE, BatchConfig, Batcher, QueueFull
from week12_nanochat.engine import ChatEngine, Sampling

pytestmark = pytest.mark.core

QUESTIONS = ["What is 12 + 30?", "Compute 7 * 6.", "hi", "Reverse the word apple."]


@pytest.fixture
def long_engine(chat_tok, make_llama):
    """A random tiny model with no tools whose replies run to the token limit."""
    return ChatEngine(make_llama(chat_tok.vocab_size, seed=0), chat_tok, tools={})


def _collect(ticket):
    texts = [""] * ticket.n
    for j, e in ticket:
        if e.kind == "text":
            texts[j] += e.text
    return texts


def test_waiting_requests_share_one_batch_with_the_direct_batchs_replies(engine):
    batcher = Batcher(engine, BatchConfig(batch_size=8, gather_ms=50))
    sampling = Sampling(max_tokens=40)
    tickets = [batcher.submit(q, sampling) for q in QUESTIONS]  # all waiting before it starts
    with batcher:
        for t in tickets:
            _collect(t)
    direct = engine.stream(QUESTIONS, sampling).run()
    assert batcher.batches == 1 and {t.batch_rows for t in tickets} == {len(QUESTIONS)}
    for t, ref in zip(tickets, direct):
        assert t.replies[0] == ref  # text, calls, finish reason, usage
    solo = engine.reply(QUESTIONS[0], sampling)
    assert solo.completion_tokens > 0 and any(r.calls for r in direct)


def test_settings_that_cannot_share_run_apart_and_n_rows_are_sampled(engine):
    batcher = Batcher(engine, BatchConfig(batch_size=8, gather_ms=50))
    greedy, hot = Sampling(max_tokens=30), Sampling(max_tokens=30, temperature=1.0, seed=3)
    a = batcher.submit(QUESTIONS[0], greedy)
    b = batcher.submit(QUESTIONS[1], hot, n=3)
    c = batcher.submit(QUESTIONS[2], greedy, tools=False)
    with batcher:
        for t in (a, b, c):
            _collect(t)
    assert batcher.batches == 3 and len({a.batch, b.batch, c.batch}) == 3
    assert b.batch_rows == 3 and a.batch_rows == 1
    ref = engine.stream([QUESTIONS[1]] * 3, hot).run()
    assert b.replies == ref and len({r.text for r in ref} | {str(r.calls) for r in ref}) > 1
    assert c.replies[0] == engine.reply(QUESTIONS[2], greedy, tools=False)
    assert c.replies[0].calls == []


def test_a_cancelled_ticket_frees_its_row_and_the_others_are_unchanged(long_engine, make_paused):
    sampling = Sampling(max_tokens=120)
    full = long_engine.stream(["hi", "hello"], sampling).run()
    assert all(r.finish_reason == "length" for r in full)
    paused = make_paused(long_engine)
    batcher = Batcher(paused, BatchConfig(batch_size=4, gather_ms=50))
    gone, stays = batcher.submit("hi", sampling), batcher.submit("hello", sampling)
    never = batcher.submit("hey", sampling)
    never.cancel()  # cancelled while waiting: it takes no row
    with batcher:
        assert paused.reached.wait(30)
        gone.cancel()  # mid-stream: its row leaves the batch at its next token
        paused.go.set()
        _collect(gone)
        _collect(stays)
        assert never.get(timeout=30) == (DONE, None)
    assert gone.replies[0].finish_reason == "cancelled"
    assert gone.replies[0].completion_tokens < full[0].completion_tokens
    assert stays.replies[0] == full[1] and gone.batch == stays.batch
    assert never.batch is None and batcher.rows == 2


def test_the_batch_size_bounds_each_batch_and_limits_refuse(engine):
    """Request-level batching (``continuous=False``): 5 tickets of 6 rows, 2 rows a batch."""
    batcher = Batcher(engine, BatchConfig(batch_size=2, gather_ms=50, max_queue=5,
                                          continuous=False))
    tickets = [batcher.submit(q, Sampling(max_tokens=10)) for q in QUESTIONS]
    tickets.append(batcher.submit("one more", Sampling(max_tokens=10), n=2))
    with pytest.raises(QueueFull, match="at most 5"):
        batcher.submit("too many")
    with pytest.raises(ValueError, match="n must be an int from 1 to the batch size 2"):
        batcher.submit("hi", n=3)
    with batcher:
        for t in tickets:
            _collect(t)
    assert all(t.batch_rows <= 2 for t in tickets) and batcher.batches == 3
    assert tickets[-1].batch_rows == 2 and all(r is not None for r in tickets[-1].replies)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        BatchConfig(batch_size=0)


class _Logged:
    """An engine whose (continuous) batches log every event in the decoding thread and pause
    after row 0's first words until ``go`` is set (so a test submits while it decodes)."""

    def __init__(self, engine):
        self.engine, self.reached, self.go = engine, threading.Event(), threading.Event()
        self.log: list[tuple[int, str]] = []  # (row, kind), in the order the batch made them

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def stream(self, *args, **kwargs):
        inner, logged = self.engine.stream(*args, **kwargs), self

        class Stream:
            cancel, add = inner.cancel, inner.add

            def __iter__(self):
                for e in inner:
                    logged.log.append((e.request, e.kind))
                    yield e
                    if e.request == 0 and e.kind == "text" and not logged.reached.is_set():
                        logged.reached.set()
                        assert logged.go.wait(30)

        return Stream()


def test_a_request_arriving_mid_batch_joins_it_and_replies_as_alone(long_engine):
    """Token-level continuous batching: submitted while a 120-token batch decodes, a request
    joins that batch, makes its first words before the batch's first row ends (and its
    ``done`` does not wait for the rows that joined after it), and its greedy reply is its
    reply alone; the batch size bounds the live rows."""
    sampling = Sampling(max_tokens=120)
    alone = [long_engine.reply(q, sampling) for q in ("hi", "hello there", "hey")]
    logged = _Logged(long_engine)
    batcher = Batcher(logged, BatchConfig(batch_size=2, gather_ms=0))
    with batcher:
        first = batcher.submit("hi", sampling)
        assert logged.reached.wait(30)
        late = batcher.submit("hello there", sampling)  # while "hi" decodes
        third = batcher.submit("hey", sampling)  # no free row: waits for one
        logged.go.set()
        for t in (first, late, third):
            _collect(t)
    assert late.batch == first.batch == 0 and late.batch_rows == 2
    assert [first.replies[0], late.replies[0], third.replies[0]] == alone
    assert all(r.finish_reason == "length" for r in alone)
    log = logged.log
    assert log.index((1, "text")) < log.index((0, "done"))  # it streams before "hi" ends
    assert log.index((0, "done")) < log.index((2, "text"))  # "hey" took the freed row
    assert log.index((1, "done")) < len(log) - 1  # "hey" was still decoding then


def test_sampled_tickets_with_different_seeds_share_a_batch_and_reply_as_alone(long_engine):
    """Every row draws from its own generator (week01's ``Decoding(seeds=)``): tickets whose
    only difference is the seed share one batch, a ticket joining mid-batch too, and each
    sampled reply is the one its seed gives alone (choice j: seed + j)."""
    def hot(seed):
        return Sampling(max_tokens=40, temperature=1.0, top_k=50, seed=seed)

    asks = [("hi", 3, 1), ("hello there", 11, 2), ("hey", 7, 1)]  # (question, seed, n)
    alone = [long_engine.stream([q] * n, hot(s)).run() for q, s, n in asks]
    logged = _Logged(long_engine)
    batcher = Batcher(logged, BatchConfig(batch_size=8, gather_ms=50))
    with batcher:
        first = [batcher.submit(q, hot(s), n=n) for q, s, n in asks[:2]]
        assert logged.reached.wait(30)
        late = batcher.submit(asks[2][0], hot(asks[2][1]))  # while the first two decode
        logged.go.set()
        for t in (*first, late):
            _collect(t)
    assert batcher.batches == 1 and batcher.joined == 1
    assert [t.replies for t in (*first, late)] == alone
    assert alone[1][0] != alone[1][1]  # seeds 11 and 12: the choices differ
