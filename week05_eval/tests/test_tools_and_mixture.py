"""Tool use through week04's generate_with_tools, and the tool-conversation mixing loader."""

import pytest
import torch

from week05_eval import GenExample, GenTask, evaluate_generative
from week05_eval.generative import chat_prompt_ids

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")


def test_with_tools_beats_without_when_the_model_cannot_compute(tokenizer, oracle_llama_cls):
    """The scripted model calls the calculator for 37 * 48. Left alone it then 'hallucinates'
    the output 1000 and answers 1000; with the real Calculator the output 1776 is forced
    into its context and it follows the other script, answering 1776. So: 0% without tools,
    100% with, one tool call."""
    from week04_modern_arch_tools import Calculator
    sp = tokenizer.special_tokens
    q = "What is 37 * 48?"
    prompt = chat_prompt_ids(tokenizer, q)
    call = ([sp["<|python_start|>"]] + tokenizer.encode("calculator: 37 * 48")
            + [sp["<|python_end|>"], sp["<|output_start|>"]])

    def script(output, answer):
        return (prompt + call + tokenizer.encode(output) + [sp["<|output_end|>"]]
                + tokenizer.encode(answer) + [sp["<|assistant_end|>"]])

    model = oracle_llama_cls([script("1000", "37 * 48 = 1000."), script("1776", "37 * 48 = 1776.")],
                             tokenizer.vocab_size)
    task = GenTask("arith", [GenExample(q, "1776", match="numeric")])
    plain = evaluate_generative(model, tokenizer, task, style="chat", max_new_tokens=60)
    assert plain.predictions == ["37 * 48 = 1000."] and plain.accuracy == 0.0
    tooled = evaluate_generative(model, tokenizer, task, style="chat", max_new_tokens=60,
                                 tools={"calculator": Calculator()})
    assert tooled.predictions == ["37 * 48 = 1776."] and tooled.accuracy == 1.0
    assert tooled.tool_calls == 1


def test_tool_task_from_week04():
    from week05_eval import tool_task
    t = tool_task("arithmetic", n=5, seed=0)
    assert len(t.examples) == 5 and all(e.match == "numeric" for e in t.examples)
    assert all(e.answer.endswith(".") and "=" in e.answer for e in t.examples)
    facts = tool_task("facts", n=3, seed=0)
    assert all(e.match == "exact" for e in facts.examples)
    with pytest.raises(ValueError, match="unknown tool task"):
        tool_task("poetry")


def test_mix_loader_rows_masks_and_resume(tmp_path, tokenizer):
    """Tool rows replace the last rows of each batch; targets are IGNORE_INDEX (-1) except on the
    assistant's trained tokens (week04's mask, shifted by one); state_dict resumes exactly."""
    from week02_bpe import TokenLoader, prepare
    from week04_modern_arch_tools import make_tool_dataset, render_conversation
    from week05_eval.mixture import IGNORE, ToolMixLoader
    prepare(["some plain text about python modules and functions. " * 30] * 4, tokenizer,
            tmp_path / "d", num_workers=1, progress=False, val_fraction=0.0)
    convs = make_tool_dataset("arithmetic", 20, seed=0, split="train")
    base = TokenLoader(tmp_path / "d", batch_size=4, block_size=16)
    mix = ToolMixLoader(base, convs, tokenizer, tool_rows=2, seed=3)
    x, y = mix.next_batch()
    assert x.shape == y.shape == (4, 16)
    stream = [t for c in convs for t in render_conversation(c, tokenizer)[0]]
    trained = {t for c in convs for t, m in zip(*render_conversation(c, tokenizer)) if m}
    for row in (2, 3):
        xs = x[row].tolist()
        assert any(stream[i:i + 16] == xs for i in range(0, len(stream) - 15, 16))
        kept = y[row][y[row] != IGNORE].tolist()
        assert kept and set(kept) <= trained
        assert (y[row] == IGNORE).any()                 # user turns / outputs are not trained
    state = mix.state_dict()
    a = [mix.next_batch() for _ in range(3)]
    mix2 = ToolMixLoader(TokenLoader(tmp_path / "d", batch_size=4, block_size=16), convs,
                         tokenizer, tool_rows=2, seed=3)
    mix2.load_state_dict(state)
    b = [mix2.next_batch() for _ in range(3)]
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="tool_rows"):
        ToolMixLoader(base, convs, tokenizer, tool_rows=5)


def test_default_tools_reproduce_the_reference_outputs():
    """The tools the report card hands the model give, on each reference tool call of
    week04's test conversations, exactly the output written in the conversation."""
    from week04_modern_arch_tools import make_tool_dataset
    from week05_eval.report import default_tools
    tools = default_tools(seed=0)
    try:
        for kind in ("arithmetic", "facts"):
            for conv in make_tool_dataset(kind, 3, seed=0, split="test"):
                parts = conv[1]["content"]
                call = next(p["text"] for p in parts if p["type"] == "python")
                want = next(p["text"] for p in parts if p["type"] == "output")
                name, _, arg = call.partition(":")
                assert tools[name].run(arg.strip()) == want
    finally:
        tools["python"].close()
