"""Continuous batching: ``KVCache.join`` aligns two clocks, and rows added to a running
``Decoding`` make exactly the tokens they make alone (greedy), whatever step they join at;
with a generator per row (``Decoding(..., seeds=[...])``) a sampled row does too, alone,
beside other rows or joined late (one generator for the batch does not promise that)."""

import pytest
import torch

from week01_transformer import GPT, DecodeConfig, Decoding, GPTConfig, KVCache, decode
from week01_transformer.decoding import CannotAdd, sample_next

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=61, block_size=64, n_layer=2, n_head=4, n_embd=32)).eval()


def prompts(*lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 61, (n,), generator=g).tolist() for n in lengths]


def alone(model, ps, n):
    return [decode(model, [p], DecodeConfig(max_new_tokens=n, temperature=0))[0].ids for p in ps]


# ---------------------------------------------------------------- the cache


@pytest.mark.parametrize("first,second", [(7, 3), (3, 7)])
def test_join_shifts_the_cache_behind_and_keeps_every_rows_next_logits(model, first, second):
    """The joined cache's clock is the larger one; the other cache's keys move right and its
    padding grows by the difference; each row's next-token logits are those it had alone."""
    a_ids, b_ids = prompts(first, second, seed=1)
    a, b = model.new_cache(1, 40), model.new_cache(1, second)
    with torch.no_grad():
        model.run(torch.tensor([a_ids]), a)
        model.run(torch.tensor([b_ids]), b)
        ka, kb = a.k[:, :, :, :first].clone(), b.k[:, :, :, :second].clone()
        a.join(b)
        pos = max(first, second)
        assert a.pos == pos and a.batch_size == 2 and a.max_len == 40
        assert a.pad.tolist() == [pos - first, pos - second]
        assert torch.equal(a.k[:, :1, :, pos - first:pos], ka)
        assert torch.equal(a.k[:, 1:, :, pos - second:pos], kb)
        nxt = torch.tensor([[5], [9]])
        joined = model.step(nxt, a)  # (2, V)
        for row, ids in enumerate((a_ids, b_ids)):
            ref = model.run(torch.tensor([ids + [int(nxt[row])]]))[0, -1]
            torch.testing.assert_close(joined[row], ref, atol=1e-5, rtol=1e-5)


def test_join_refuses_a_clock_past_the_cache_and_another_kind_of_cache(model):
    a, b = model.new_cache(1, 8), model.new_cache(1, 8)
    with torch.no_grad():
        model.run(torch.tensor([prompts(3)[0]]), a)
        model.run(torch.tensor([prompts(8)[0]]), b)
    with pytest.raises(ValueError, match="drain first"):
        a.join(b)
    other = KVCache(1, 1, 4, 8, 8)
    with pytest.raises(ValueError, match="different models"):
        a.join(other)
    with pytest.raises(ValueError, match="only join rows of another KVCache"):
        a.join(object())


# ---------------------------------------------------------------- the loop


@pytest.mark.parametrize("at", [0, 3, 9])
def test_rows_added_at_any_step_make_the_tokens_they_make_alone(model, at):
    """Prompts of 4 and 11 tokens run; at step ``at`` a 2-token prompt (shorter than the
    clock) and a 30-token one (longer: the running rows shift) join with their own limits."""
    ps = prompts(4, 11, 2, 30, seed=2)
    ref = alone(model, ps, 14)
    d = Decoding(model, ps[:2], DecodeConfig(max_new_tokens=14, temperature=0), continuous=True)
    seen: dict[int, int] = {}  # row -> the step of its first token
    for step, events in enumerate(d):
        for e in events:
            seen.setdefault(e.row, step)
        if step == at:
            assert d.add(ps[2:], max_new_tokens=10) == [2, 3]
    assert [r.ids for r in d.rows[:2]] == ref[:2]
    assert [r.ids for r in d.rows[2:]] == [r[:10] for r in ref[2:]]
    assert seen[2] == seen[3] == at + 1  # they joined at the very next step


def test_rows_added_from_on_token_and_before_the_start_and_after_the_batch_empties(model):
    ps = prompts(6, 3, 9, 5, seed=3)
    ref = alone(model, ps, 8)
    holder = {}

    def on_token(b, tok, forced):
        if b == 0 and len(holder["d"].rows[0].ids) == 2:
            holder["d"].add([ps[2]])  # from the hook, mid-step
        return None

    d = holder["d"] = Decoding(model, [ps[0]], DecodeConfig(max_new_tokens=8, temperature=0),
                               on_token=on_token, continuous=True)
    d.add([ps[1]])  # before decoding starts: part of the first batch
    last = None
    for events in d:
        last = events
        if len(d.rows) == 3 and len(d.rows[2].ids) == 8:
            d.add([ps[3]])  # every row ends at this step: the batch restarts with this one
    assert [r.ids for r in d.rows] == ref
    assert [e.row for e in last] == [3]


def test_late_rows_keep_stop_rules_and_forced_tokens(model):
    ps = prompts(5, 8, seed=4)
    ref = alone(model, ps, 12)
    stop = ref[1][6]
    forced_at = {}

    def on_token(b, tok, forced):
        if b == 1 and len(d.rows[1].ids) == 2 and 1 not in forced_at:
            forced_at[1] = True
            return [7, 8]
        return None

    d = Decoding(model, [ps[0]], DecodeConfig(max_new_tokens=12, temperature=0,
                                              stop_tokens=(stop,)),
                 on_token=on_token, continuous=True)
    for step, _ in enumerate(d):
        if step == 1:
            d.add([ps[1]])
    late = d.rows[1]
    assert late.ids[:4] == ref[1][:2] + [7, 8] and late.forced[:4] == [False, False, True, True]
    # after the forced tokens it decodes on from prompt + its ids (greedy, alone)
    cont = decode(model, [ps[1] + late.ids[:4]],
                  DecodeConfig(max_new_tokens=8, temperature=0, stop_tokens=(stop,)))[0]
    assert late.ids[4:] == cont.ids and late.finished == cont.finished
    first = ref[0][:ref[0].index(stop) + 1] if stop in ref[0] else ref[0]
    assert d.rows[0].ids == first


def test_add_refuses_clearly_when_rows_cannot_join(model):
    cfg = DecodeConfig(max_new_tokens=5, temperature=0)
    with pytest.raises(CannotAdd, match="continuous=True"):
        Decoding(model, prompts(3), cfg).add(prompts(3))
    with pytest.raises(CannotAdd, match="drain first"):
        Decoding(model, prompts(3), DecodeConfig(max_new_tokens=5, temperature=0,
                                                 use_cache=False), continuous=True).add(prompts(3))
    d = Decoding(model, prompts(3), DecodeConfig(max_new_tokens=40, temperature=0),
                 continuous=True)
    it = iter(d)
    next(it)
    assert d.fits([20], 20) and not d.fits([30], 40)
    with pytest.raises(CannotAdd, match="drain first"):
        d.add(prompts(30), max_new_tokens=40)  # 30 + 39 positions > block_size 64
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1"):
        d.add(prompts(3), max_new_tokens=0)
    for _ in it:
        pass
    with pytest.raises(CannotAdd, match="has ended"):
        d.add(prompts(3))


def test_on_join_wraps_the_prefill_of_exactly_the_joining_rows(model):
    """``on_join(rows)`` is entered around the joining rows' prefill alone (the model sees
    their batch, nothing else runs inside it), once per join, with their row indices."""
    from contextlib import contextmanager

    ps = prompts(5, 8, 3, 6, seed=4)
    calls, inside = [], {"on": False, "sizes": []}

    @contextmanager
    def on_join(rows):
        calls.append(list(rows))
        inside["on"] = True
        yield
        inside["on"] = False

    def spy(module, args):
        if inside["on"]:
            inside["sizes"].append(args[0].size(0))

    emb = next(m for m in model.modules() if isinstance(m, torch.nn.Embedding))
    handle = emb.register_forward_pre_hook(spy)  # every run and step embeds its tokens
    try:
        d = Decoding(model, ps[:1], DecodeConfig(max_new_tokens=6, temperature=0),
                     continuous=True, on_join=on_join)
        for step, _ in enumerate(d):
            if step == 1:
                d.add(ps[1:3])
            if step == 3:
                d.add(ps[3:])
    finally:
        handle.remove()
    assert calls == [[1, 2], [3]] and inside["sizes"] == [2, 1]
    assert [r.ids for r in d.rows] == alone(model, ps, 6)


def test_padding_every_row_shares_is_trimmed_when_rows_leave(model):
    """A 30-token prompt with a short limit runs beside a 3-token one; a 2-token prompt joins
    late (padded to the clock). When the long row leaves, the positions both others pad move
    out of the cache (``KVCache.trim``): the clock drops, and every row still makes the
    tokens it makes alone."""
    ps = prompts(30, 3, 2, seed=5)
    d = Decoding(model, ps[:2], DecodeConfig(max_new_tokens=16, temperature=0),
                 continuous=True)
    d.limits[0] = 3  # the long row leaves after 3 tokens
    clocks = []
    for step, _ in enumerate(d):
        if step == 1:
            d.add(ps[2:], max_new_tokens=12)
        clocks.append(d.cache.pos)
    ref = alone(model, ps, 16)
    assert d.rows[0].ids == ref[0][:3]
    assert d.rows[1].ids == ref[1] and d.rows[2].ids == ref[2][:12]
    assert min(clocks[3:]) < max(clocks[:3])  # the shared padding left: the clock went back


def test_trim_moves_keys_left_and_keeps_positions():
    cache = KVCache(1, 2, 1, 2, 8, pad=torch.tensor([3, 5]))
    cache.k[0, :, 0, :5] = torch.arange(10.0).view(1, 10).expand(2, 10).reshape(2, 5, 2)
    cache.pos = 5
    before = cache.positions(1)
    keys = cache.k[0, :, 0, 3:5].clone()
    assert cache.trim(min_shift=4) == 0 and cache.pos == 5  # below the threshold: nothing
    assert cache.trim() == 3
    assert cache.pos == 2 and cache.pad.tolist() == [0, 2]
    assert torch.equal(cache.positions(1), before) and torch.equal(cache.k[0, :, 0, :2], keys)


# ---------------------------------------------------------------- a generator per row

SAMPLED = dict(max_new_tokens=20, temperature=1.0, top_k=40)


def test_a_seeded_row_makes_the_same_tokens_alone_beside_others_and_joined_late(model):
    p, a, b, c = prompts(5, 9, 3, 12, seed=1)
    # alone: the old path (one generator for a batch of one, seeded with cfg.seed)
    ref = decode(model, [p], DecodeConfig(**SAMPLED, seed=7))[0].ids
    assert decode(model, [p], DecodeConfig(**SAMPLED), seeds=[7])[0].ids == ref
    beside = decode(model, [a, p, b], DecodeConfig(**SAMPLED), seeds=[1, 7, 2])
    assert beside[1].ids == ref
    # a neighbour that stops early leaves the batch; the row does not notice
    stop = beside[0].ids[2]
    short = decode(model, [a, p], DecodeConfig(**SAMPLED, stop_tokens=(stop,)), seeds=[1, 7])
    assert len(short[0].ids) < 20 and short[1].ids[:len(ref)] == ref[:len(short[1].ids)]
    # joined at step 3 of a running batch
    d = Decoding(model, [c, a], DecodeConfig(**SAMPLED), seeds=[3, 1], continuous=True)
    for step, _ in enumerate(d):
        if step == 3:
            (row,) = d.add([p], seeds=[7])
    assert d.rows[row].ids == ref
    assert d.rows[1].ids == beside[0].ids  # a, seed 1, beside c here and beside p, b there
    # one generator for the batch: the same prompt and seed draw differently beside others
    shared = decode(model, [a, p, b], DecodeConfig(**SAMPLED, seed=7))
    assert shared[1].ids != ref


def test_seeds_choose_the_draws_and_none_means_cfg_seed(model):
    (p,) = prompts(6, seed=2)
    rows = decode(model, [p, p, p], DecodeConfig(**SAMPLED, seed=5), seeds=[5, None, 6])
    assert rows[0].ids == rows[1].ids  # None: cfg.seed
    assert rows[0].ids != rows[2].ids
    d = Decoding(model, [p], DecodeConfig(**SAMPLED, seed=5), seeds=[0], continuous=True)
    new = d.add([p])  # no seeds: cfg.seed
    d.run()
    assert d.rows[new[0]].ids == rows[0].ids


def test_greedy_rows_ignore_their_seeds(model):
    a, b = prompts(4, 8, seed=3)
    cfg = DecodeConfig(max_new_tokens=10, temperature=0)
    assert [r.ids for r in decode(model, [a, b], cfg, seeds=[1, 2])] == \
        [r.ids for r in decode(model, [a, b], cfg)]


def test_seeds_are_checked(model):
    a, b = prompts(4, 8, seed=3)
    with pytest.raises(ValueError, match="not both"):
        Decoding(model, [a], DecodeConfig(**SAMPLED), seeds=[1], generator=torch.Generator())
    with pytest.raises(ValueError, match="one int .* per prompt: 2 prompt"):
        Decoding(model, [a, b], DecodeConfig(**SAMPLED), seeds=[1])
    with pytest.raises(ValueError, match="one int"):
        Decoding(model, [a], DecodeConfig(**SAMPLED), seeds=["1"])
    d = Decoding(model, [a], DecodeConfig(**SAMPLED), continuous=True)
    with pytest.raises(ValueError, match="build it with seeds"):
        d.add([b], seeds=[1])
    with pytest.raises(ValueError, match="2 generators for 1 rows"):
        sample_next(torch.zeros(1, 5), 1.0, None, None, [torch.Generator()] * 2)
