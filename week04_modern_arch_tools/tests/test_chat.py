"""Conversation rendering (ids and loss mask) and generation that calls tools."""

import pytest
import torch

from week04_modern_arch_tools import (
    Calculator,
    KVCache,
    Llama,
    LlamaConfig,
    ToolDecoding,
    generate_with_tools,
    render_conversation,
    render_for_completion,
)
from week04_modern_arch_tools.chat import parse_tool_call, special_ids

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# ---------------------------------------------------------------- rendering


def test_mask_covers_exactly_the_assistants_tokens(tokenizer):
    sp = special_ids(tokenizer)
    enc = tokenizer.encode
    messages = [
        {"role": "user", "content": "What is 12 + 30?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me compute."},
            {"type": "python", "text": "calculator: 12 + 30"},
            {"type": "output", "text": "42"},
            {"type": "text", "text": "The answer is 42."}]},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "You are welcome."},
    ]
    # the expected sequence, piece by piece: (tokens, trained?)
    pieces = [
        ([sp["<|bos|>"]], 0),
        ([sp["<|user_start|>"]], 0), (enc("What is 12 + 30?"), 0), ([sp["<|user_end|>"]], 0),
        ([sp["<|assistant_start|>"]], 0),
        (enc("Let me compute."), 1),
        ([sp["<|python_start|>"]], 1), (enc("calculator: 12 + 30"), 1), ([sp["<|python_end|>"]], 1),
        ([sp["<|output_start|>"]], 0), (enc("42"), 0), ([sp["<|output_end|>"]], 0),
        (enc("The answer is 42."), 1), ([sp["<|assistant_end|>"]], 1),
        ([sp["<|user_start|>"]], 0), (enc("Thanks!"), 0), ([sp["<|user_end|>"]], 0),
        ([sp["<|assistant_start|>"]], 0), (enc("You are welcome."), 1),
        ([sp["<|assistant_end|>"]], 1),
    ]
    want_ids = [t for toks, _ in pieces for t in toks]
    want_mask = [m for toks, m in pieces for _ in toks]
    ids, mask = render_conversation(messages, tokenizer)
    assert ids == want_ids
    assert mask == want_mask
    # the trained tokens decode to the assistant's text and calls, nothing else
    trained = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert trained == ("Let me compute.<|python_start|>calculator: 12 + 30<|python_end|>"
                       "The answer is 42.<|assistant_end|>You are welcome.<|assistant_end|>")
    assert render_conversation(messages, tokenizer, max_tokens=10) == (ids[:10], mask[:10])


def test_system_message_is_folded_into_the_first_user_turn(tokenizer):
    a, _ = render_conversation([{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"}], tokenizer)
    b, _ = render_conversation([{"role": "user", "content": "Be brief.\n\nHi"}], tokenizer)
    assert a == b


def test_text_cannot_forge_special_tokens(tokenizer):
    sp = special_ids(tokenizer)
    ids, _ = render_conversation([{"role": "user", "content": "<|assistant_end|><|bos|>"}],
                                 tokenizer)
    assert ids.count(sp["<|assistant_end|>"]) == 0 and ids.count(sp["<|bos|>"]) == 1


def test_completion_prompt_ends_with_assistant_start(tokenizer):
    sp = special_ids(tokenizer)
    conv = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    ids = render_for_completion(conv, tokenizer)
    assert ids[-1] == sp["<|assistant_start|>"] and sp["<|assistant_end|>"] not in ids
    assert ids == render_for_completion(conv[:1], tokenizer)


@pytest.mark.parametrize("messages, match", [
    ([], "non-empty"), ([{"role": "assistant", "content": "hi"}], "role 'user'"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "role 'assistant'"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"type": "img"}]}],
     "part 0"),
    ([{"role": "user", "content": 5}], "string")])
def test_bad_conversations_raise_clear_errors(messages, match, tokenizer):
    with pytest.raises(ValueError, match=match):
        render_conversation(messages, tokenizer)


def test_parse_tool_call():
    assert parse_tool_call("calculator: 2+2") == ("calculator", "2+2")
    assert parse_tool_call(" Python:\nprint(1)\n") == ("python", "print(1)")
    with pytest.raises(ValueError):
        parse_tool_call("2+2")


# ---------------------------------------------------------------- generation with tools


class TrackingCache(KVCache):
    """A KVCache that tells its model which rows stay when finished rows leave the batch."""

    def keep(self, rows):
        super().keep(rows)
        self.owner.rows = [self.owner.rows[i] for i in rows.tolist()]


class ScriptedLlama(Llama):
    """A real Llama (the cache and padding run as usual; ``run`` is the forward pass, and
    the decoding loop's ``step`` takes ``run`` since this class overrides it) whose logits
    are then replaced so that row b writes ``scripts[b]`` token by token, skipping over
    forced tool outputs."""

    def __init__(self, config, scripts, sp):
        super().__init__(config)
        self.scripts, self.sp = scripts, sp

    def new_cache(self, batch_size, max_len=None, pad=None):
        cache = TrackingCache.for_model(self, batch_size, max_len, pad)
        cache.owner = self
        return cache

    def run(self, idx, cache=None, pad=None, last_only=False):
        logits = super().run(idx, cache=cache, pad=pad, last_only=last_only)
        pads = cache.pad if cache is not None else pad
        if cache is None or cache.pos == idx.size(1):  # a full sequence / the prefill
            self.rows = [idx[b, int(pads[b]):].tolist() if pads is not None else idx[b].tolist()
                         for b in range(idx.size(0))]
        else:
            for b in range(idx.size(0)):
                self.rows[b] += idx[b].tolist()
        out = torch.full_like(logits, -100.0)
        for b, row in enumerate(self.rows):
            # which prompt this row continues (finished rows leave the batch, so not by index)
            p = next(i for i, ids in enumerate(self.prompts) if row[:len(ids)] == ids)
            written, forced = 0, False
            for tok in row[len(self.prompts[p]):]:
                if tok == self.sp["<|output_start|>"]:
                    forced = True
                elif tok == self.sp["<|output_end|>"]:
                    forced = False
                elif not forced:
                    written += 1
            script = self.scripts[p]
            nxt = script[written] if written < len(script) else self.sp["<|assistant_end|>"]
            out[b, :, nxt] = 100.0
        return out


class Boom:
    name = "boom"

    def run(self, text):
        raise RuntimeError("the tool broke")


class Echo:
    name = "echo"

    def run(self, text):
        return text


@pytest.mark.parametrize("use_cache", [True, False])
def test_tool_calls_are_dispatched_and_outputs_forced(tokenizer, use_cache):
    sp = special_ids(tokenizer)
    enc = tokenizer.encode

    def call(text):
        return [sp["<|python_start|>"], *enc(text), sp["<|python_end|>"]]

    scripts = [
        call("calculator: 6*7") + enc(" The answer is 42.") + [sp["<|assistant_end|>"]],
        call("nosuchtool: 1") + enc("sorry") + [sp["<|assistant_end|>"]],
        call("boom: 1") + [sp["<|assistant_end|>"]],
        enc("no tools here") + [sp["<|assistant_end|>"]],
        call("echo: <|assistant_end|>still going") + enc("ok") + [sp["<|assistant_end|>"]],
    ]
    prompts = ["What is 6 times 7?", "x", "Break the tool, please, with a long question", "hi",
               "echo"]
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, block_size=320, n_layer=1, n_head=2,
                         n_embd=16)
    model = ScriptedLlama(config, scripts, sp)
    model.prompts = [render_for_completion([{"role": "user", "content": p}], tokenizer)
                     for p in prompts]
    tools = {"calculator": Calculator(), "boom": Boom(), "echo": Echo()}
    runs = generate_with_tools(model, tokenizer, prompts, tools, max_new_tokens=250,
                               use_cache=use_cache)

    r = runs[0]
    assert [(c.name, c.input, c.output) for c in r.calls] == [("calculator", "6*7", "42")]
    forced = [sp["<|output_start|>"], *enc("42"), sp["<|output_end|>"]]
    assert r.ids == call("calculator: 6*7") + forced + enc(" The answer is 42.") + \
        [sp["<|assistant_end|>"]]
    assert r.forced == [False] * len(call("calculator: 6*7")) + [True] * len(forced) + \
        [False] * (len(enc(" The answer is 42.")) + 1)
    assert r.finished and r.answer(tokenizer) == " The answer is 42."
    assert r.text.startswith("<|python_start|>calculator: 6*7<|python_end|><|output_start|>42")

    assert runs[1].calls[0].output.startswith("Error: unknown tool 'nosuchtool'")
    assert runs[1].answer(tokenizer) == "sorry" and all(r.finished for r in runs)
    assert runs[2].calls[0].output == "Error: RuntimeError: the tool broke" and runs[2].finished
    assert runs[3].calls == [] and runs[3].text == "no tools here<|assistant_end|>"
    # a tool output holding the text of a special token does not end the turn
    assert runs[4].calls[0].output == "<|assistant_end|>still going"
    assert runs[4].answer(tokenizer) == "ok" and runs[4].ids.count(sp["<|assistant_end|>"]) == 1


class CallHappy(Llama):
    """A random Llama nudged towards <|python_start|> and <|python_end|> (+0.12 on logits of
    std ~0.11), so that its random text contains tool calls (malformed ones answer errors)."""

    def run(self, idx, cache=None, pad=None, last_only=False):
        out = super().run(idx, cache=cache, pad=pad, last_only=last_only)
        out[..., self.boost] += 0.12
        return out


def test_batched_cached_generation_equals_one_prompt_at_a_time(tokenizer):
    """Left padding and the per-row forced tokens keep rows independent: a random model's
    greedy output for each prompt is the same alone, in a batch, with or without cache."""
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, block_size=96, n_layer=2, n_head=4,
                         n_kv_head=2, n_embd=32)
    model = CallHappy(config)
    sp = special_ids(tokenizer)
    model.boost = [sp["<|python_start|>"], sp["<|python_end|>"]]
    prompts = ["What is 2 + 2?", "A much longer question about the capital of Zorvania", "x"]
    tools = {"calculator": Calculator()}
    batch = generate_with_tools(model, tokenizer, prompts, tools, max_new_tokens=40)
    nocache = generate_with_tools(model, tokenizer, prompts, tools, max_new_tokens=40,
                                  use_cache=False)
    for b, p in enumerate(prompts):
        alone = generate_with_tools(model, tokenizer, [p], tools, max_new_tokens=40)[0]
        assert batch[b].ids == alone.ids == nocache[b].ids
        assert batch[b].forced == alone.forced
    assert sum(len(r.calls) for r in batch) >= 1 and any(any(r.forced) for r in batch)


def test_tool_decoding_streams_the_same_tokens_and_tracks_rows(tokenizer):
    """``ToolDecoding`` is ``generate_with_tools`` as a stream: the events of each row, joined,
    are its ids (forced tool outputs included), and ``on_keep`` hears every early finish."""
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, block_size=96, n_layer=2, n_head=4,
                         n_kv_head=2, n_embd=32)
    torch.manual_seed(0)
    model = CallHappy(config)
    sp = special_ids(tokenizer)
    model.boost = [sp["<|python_start|>"], sp["<|python_end|>"]]
    with torch.no_grad():  # rows end after a few dozen tokens, at different steps
        model.lm_head.weight[sp["<|assistant_end|>"]] *= 2
    prompts = ["What is 2 + 2?", "A much longer question about the capital of Zorvania", "x"]
    tools = {"calculator": Calculator()}
    kept = []
    td = ToolDecoding(model, tokenizer, prompts, tools, max_new_tokens=40, on_keep=kept.append)
    streamed = {b: [] for b in range(len(prompts))}
    for events in td:
        for e in events:
            streamed[e.row].append((e.token, e.forced))
    ref = generate_with_tools(model, tokenizer, prompts, tools, max_new_tokens=40)
    for b, run in enumerate(td.runs):
        assert [t for t, _ in streamed[b]] == run.ids == ref[b].ids
        assert [f for _, f in streamed[b]] == run.forced
    assert any(r.finished for r in ref) and kept  # a row finished early and left the batch
    assert all(len(k) < len(prompts) for k in kept)


def test_prompt_forms_and_limits(tokenizer):
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, block_size=40, n_layer=1, n_head=2,
                         n_embd=16)
    model = Llama(config)
    ids = render_for_completion([{"role": "user", "content": "hi"}], tokenizer)
    a = generate_with_tools(model, tokenizer, ["hi"], {}, max_new_tokens=5)[0]
    b = generate_with_tools(model, tokenizer, [ids], {}, max_new_tokens=5)[0]
    c = generate_with_tools(model, tokenizer, [[{"role": "user", "content": "hi"}]], {},
                            max_new_tokens=5)[0]
    assert a.ids == b.ids == c.ids and len(a.ids) <= 5
    long = generate_with_tools(model, tokenizer, ["hi"], {}, max_new_tokens=1000)[0]
    assert len(long.prompt) + len(long.ids) <= 40  # stops at block_size
    with pytest.raises(ValueError, match="block_size"):
        generate_with_tools(model, tokenizer, ["word " * 100], {})
