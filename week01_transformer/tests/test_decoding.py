"""The one decoding loop: equal to Hugging Face's greedy generate, stop rules, forced
tokens, rows that finish at different steps, streamed events."""

import pytest
import torch

from week01_transformer import GPT, CharTokenizer, DecodeConfig, Decoding, GPTConfig, decode

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=61, block_size=40, n_layer=2, n_head=4, n_embd=32)).eval()


def prompts(*lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 61, (n,), generator=g).tolist() for n in lengths]


def test_greedy_generation_equals_hugging_face_generate(model):
    """Same weights in ``GPT2LMHeadModel``: HF's own greedy ``generate`` picks the same ids."""
    pytest.importorskip("transformers")
    hf = model.to_hf().eval()
    idx = torch.tensor(prompts(7, 7, seed=1))
    ours = model.generate(idx, 20, temperature=0)
    with torch.no_grad():
        theirs = hf.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=20,
                             do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.0, seed=3),
                                      dict(temperature=0.8, top_k=10, top_p=0.9, seed=1)])
def test_cached_generation_equals_recomputing_every_step(model, sampling):
    idx = torch.tensor(prompts(5, 5, 5, seed=2))
    cached = model.generate(idx, 25, use_cache=True, **sampling)
    assert cached.shape == (3, 30)
    assert torch.equal(cached, model.generate(idx, 25, use_cache=False, **sampling))
    long = model.generate(idx, 50, **sampling)  # 55 > block_size 40: the window slides
    assert long.shape == (3, 55) and torch.equal(long[:, :30], cached)


def test_rows_that_stop_early_leave_the_batch_without_changing_the_others(model):
    ps = prompts(3, 9, 6, seed=4)
    alone = [decode(model, [p], DecodeConfig(max_new_tokens=12, temperature=0))[0] for p in ps]
    stop = alone[1].ids[4]  # row 1 stops at its 5th token (and maybe others earlier)
    cfg = DecodeConfig(max_new_tokens=12, temperature=0, stop_tokens=(stop,))
    rows = decode(model, ps, cfg)
    for row, ref in zip(rows, alone):
        n = ref.ids.index(stop) + 1 if stop in ref.ids else len(ref.ids)
        assert row.ids == ref.ids[:n]
        assert row.finished == (stop in ref.ids) and row.stop == (stop if row.finished else None)
    assert rows[1].finished and len(rows[1].ids) <= 5
    assert any(len(r.ids) == 12 for r in rows) or all(r.finished for r in rows)
    nocache = decode(model, ps, DecodeConfig(max_new_tokens=12, temperature=0,
                                             stop_tokens=(stop,), use_cache=False))
    assert [r.ids for r in nocache] == [r.ids for r in rows]


def test_on_keep_hears_which_rows_stay_when_rows_finish(model):
    """Per-row state outside the cache (week10's per-row adapters) follows ``on_keep``: after
    every drop, the original row ids it tracks are exactly the rows still decoding."""
    ps = prompts(3, 9, 6, 4, seed=4)
    alone = [decode(model, [p], DecodeConfig(max_new_tokens=10, temperature=0))[0] for p in ps]
    stop = alone[2].ids[3]
    for use_cache in (True, False):
        tracked = [torch.arange(len(ps))]
        d = Decoding(model, ps, DecodeConfig(max_new_tokens=10, temperature=0,
                                             stop_tokens=(stop,), use_cache=use_cache),
                     on_keep=lambda idx, t=tracked: t.append(t[-1][idx]))
        for _ in d:
            assert tracked[-1].tolist() == d.active  # the hook fires before the next step
        assert len(tracked) > 1  # some row did finish early
        assert [r.ids for r in d.rows] == [r.ids for r in decode(
            model, ps, DecodeConfig(max_new_tokens=10, temperature=0, stop_tokens=(stop,)))]


def test_forced_tokens_condition_what_comes_after(model):
    """A hook forces three ids after the row's 2nd token; the continuation is what greedy
    decoding of the prompt + everything so far gives."""
    p = prompts(6, seed=5)[0]
    forced_ids = [1, 2, 3]

    def on_token(b, tok, forced):
        if not forced and len(d.rows[b].ids) == 2:
            return forced_ids
        return None

    d = Decoding(model, [p], DecodeConfig(max_new_tokens=10, temperature=0), on_token=on_token)
    row = d.run()[0]
    assert row.ids[2:5] == forced_ids and row.forced == [False, False, True, True, True] + [False] * 5
    then = decode(model, [p + row.ids[:5]], DecodeConfig(max_new_tokens=5, temperature=0))[0]
    assert row.ids[5:] == then.ids


def test_stop_strings_events_and_the_hooks_stop(model):
    tok = CharTokenizer([chr(0x41 + i) for i in range(61)])  # every id is one character
    p = prompts(4, seed=6)[0]
    free = decode(model, [p], DecodeConfig(max_new_tokens=15, temperature=0))[0]
    target = tok.decode(free.ids[3:5])
    cfg = DecodeConfig(max_new_tokens=15, temperature=0, stop_strings=(target,))
    d = Decoding(model, [p], cfg, tokenizer=tok)
    events = [e for step in d for e in step]
    row = d.rows[0]
    assert target in tok.decode(row.ids) and row.stop == target and row.finished
    assert len(row.ids) <= 5 and [e.token for e in events] == row.ids and events[-1].done
    hooked = Decoding(model, [p], DecodeConfig(max_new_tokens=15, temperature=0),
                      on_token=lambda b, t, f: len(hooked.rows[b].ids) == 3)
    hooked = hooked.run()[0]
    assert hooked.ids == free.ids[:3] and hooked.stop == "hook"


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(ValueError, match="max_new_tokens"):
        DecodeConfig(max_new_tokens=-1)
    with pytest.raises(ValueError, match="temperature"):
        DecodeConfig(temperature=-0.5)
    with pytest.raises(ValueError, match="top_p"):
        DecodeConfig(top_p=1.5)
    with pytest.raises(ValueError, match="need a tokenizer"):
        Decoding(model, [[1, 2]], DecodeConfig(stop_strings=("x",)))
    with pytest.raises(ValueError, match="prompts must be"):
        decode(model, [[]])
    with pytest.raises(ValueError, match="token id 99 is out of range"):
        decode(model, [[1, 99]], DecodeConfig(max_new_tokens=2))
