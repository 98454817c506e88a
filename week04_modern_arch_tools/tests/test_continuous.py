"""Continuous batching with RoPE and tools: rows added to a running Llama batch (week01's
``Decoding.add``, week04's ``ToolDecoding.add``) make exactly what they make alone."""

import pytest
import torch

from week01_transformer import DecodeConfig, Decoding, decode
from week01_transformer.decoding import CannotAdd
from week04_modern_arch_tools import Calculator, Llama, LlamaConfig, ToolDecoding
from week04_modern_arch_tools.chat import generate_with_tools, special_ids

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


class CallHappy(Llama):
    """A random Llama nudged towards <|python_start|> and <|python_end|>, so that its random
    text contains tool calls (as in test_chat.py)."""

    def run(self, idx, cache=None, pad=None, last_only=False):
        out = super().run(idx, cache=cache, pad=pad, last_only=last_only)
        out[..., self.boost] += 0.12
        return out


@pytest.fixture
def model(tokenizer):
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, block_size=128, n_layer=2, n_head=4,
                         n_kv_head=2, n_embd=32)
    m = CallHappy(config).eval()
    sp = special_ids(tokenizer)
    m.boost = [sp["<|python_start|>"], sp["<|python_end|>"]]
    return m


@pytest.mark.parametrize("at", [1, 6])
def test_llama_rows_added_late_make_the_tokens_they_make_alone(model, at):
    """RoPE: a late row's positions count from its own first token, though its keys sit at
    other places of the joined cache (a 3-token prompt joins a longer clock, a 40-token one
    a shorter clock, so the running rows shift)."""
    g = torch.Generator().manual_seed(1)
    ps = [torch.randint(0, 300, (n,), generator=g).tolist() for n in (9, 5, 3, 40)]
    cfg = DecodeConfig(max_new_tokens=12, temperature=0)
    ref = [decode(model, [p], cfg)[0].ids for p in ps]
    d = Decoding(model, ps[:2], cfg, continuous=True)
    for step, _ in enumerate(d):
        if step == at:
            d.add(ps[2:])
    assert [r.ids for r in d.rows] == ref


def test_tool_decoding_add_runs_late_rows_tools(model, tokenizer):
    """Late runs call their tools (their outputs forced like any row's) and equal their runs
    alone; a late row may be given its own tool set."""
    prompts = ["What is 2 + 2?", "A much longer question about the capital of Zorvania", "x",
               "What is 12 + 30?"]
    tools = {"calculator": Calculator()}
    ref = [generate_with_tools(model, tokenizer, [p], tools, max_new_tokens=40)[0]
           for p in prompts]
    nothing = generate_with_tools(model, tokenizer, [prompts[3]], {}, max_new_tokens=40)[0]
    td = ToolDecoding(model, tokenizer, prompts[:1], tools, max_new_tokens=40, continuous=True)
    for step, _ in enumerate(td):
        if step == 2:
            assert td.add(prompts[1:3]) == [1, 2]
        if step == 5:
            assert td.add(prompts[3], tools={}, max_new_tokens=40) == [3]
    for run, want in zip(td.runs[:3], ref):
        assert run.ids == want.ids and run.forced == want.forced
        assert [(c.name, c.output) for c in run.calls] == [(c.name, c.output)
                                                          for c in want.calls]
    assert td.runs[3].ids == nothing.ids  # its own (empty) tool set
    assert any(r.calls for r in td.runs[1:3]) and any(any(r.forced) for r in td.runs[1:3])


def test_tool_decoding_add_refuses_without_continuous(model, tokenizer):
    td = ToolDecoding(model, tokenizer, ["hi"], {}, max_new_tokens=5)
    with pytest.raises(CannotAdd, match="continuous=True"):
        td.add(["there"])
    with pytest.raises(ValueError, match="block_size"):
        ToolDecoding(model, tokenizer, ["hi"], {}, continuous=True).add([[1] * 128])
