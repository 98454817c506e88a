"""The RL prompt sets and the verifiers.

- the train and test prompt sets never share a problem (week04's split_of), and
  fact answers are the generated world's values;
- each verifier accepts week04's own reference reply (rendered to tokens, with
  the real tools' outputs) and rejects a wrong one; numbers compare as numbers;
- the tool verifier refuses errors and the wrong tool; the format weight adds.
"""

from __future__ import annotations

import pytest

from week04_modern_arch_tools import ToolCall, ToolRun, fit_tokenizer, make_tool_dataset
from week04_modern_arch_tools.chat import render_conversation, render_for_completion
from week04_modern_arch_tools.tooldata import make_world
from week09_alignment.rewards import RewardConfig, correctness, reward, rl_prompts

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def tok():
    convs = (make_tool_dataset("arithmetic", 60, seed=0) + make_tool_dataset("facts", 60, seed=0)
             + make_tool_dataset("string", 30, seed=0))
    return fit_tokenizer(convs, vocab_size=300)


def _reference_run(conv, tok, answer_text=None) -> ToolRun:
    """week04's reference reply as the ToolRun a model that wrote it would give."""
    if answer_text is not None:
        parts = [p for p in conv[1]["content"] if p["type"] != "text"]
        conv = [conv[0], {"role": "assistant", "content": parts + [{"type": "text", "text": answer_text}]}]
    ids, _ = render_conversation(conv, tok)
    prompt = render_for_completion(conv[:1], tok)
    new = ids[len(prompt):]
    call = next(p["text"] for p in conv[1]["content"] if p["type"] == "python")
    out = next(p["text"] for p in conv[1]["content"] if p["type"] == "output")
    name, _, arg = call.partition(":")
    return ToolRun(prompt=prompt, ids=new, forced=[False] * len(new),
                   calls=[ToolCall(name.strip(), arg.strip(), out)], finished=True)


def test_splits_are_disjoint_and_facts_come_from_the_world():
    for kind in ("arithmetic", "facts", "tool"):
        train = {e["prompt"][0]["content"] for e in rl_prompts(kind, 150, seed=0, split="train")}
        test = {e["prompt"][0]["content"] for e in rl_prompts(kind, 60, seed=0, split="test")}
        assert train and test and not train & test, kind
    world = {c["name"]: c for c in make_world(0)}
    for e in rl_prompts("facts", 30, seed=0):
        q = e["prompt"][0]["content"]
        country = next(c for n, c in world.items() if n in q)
        assert e["answer"] in {str(v) for v in country.values()}
    ex = rl_prompts("tool", 6)
    assert [e["answer"] for e in ex] == ["calculator", "python", "search"] * 2
    with pytest.raises(ValueError, match="valid: arithmetic, facts, tool"):
        rl_prompts("poetry", 3)


@pytest.mark.parametrize("kind", ["arithmetic", "facts"])
def test_reference_replies_score_one_and_wrong_ones_zero(tok, kind):
    convs = make_tool_dataset(kind, 20, seed=0)
    examples = rl_prompts(kind, 20, seed=0)
    for conv, ex in zip(convs, examples):
        assert reward(ex, _reference_run(conv, tok), tok) == 1.0
        assert reward(ex, _reference_run(conv, tok, "I do not know."), tok) == 0.0
    ex, conv = examples[0], convs[0]
    if kind == "arithmetic":  # a number as a number: thousands separator, trailing .0
        value = int(ex["answer"])
        assert reward(ex, _reference_run(conv, tok, f"It is {value:,}.0"), tok) == 1.0
        assert reward(ex, _reference_run(conv, tok, f"It is {value + 1}."), tok) == 0.0
    else:  # listing many candidates past the word cap is refused
        long = " ".join(["maybe"] * 12 + [ex["answer"]])
        assert reward(ex, _reference_run(conv, tok, long), tok) == 0.0


def test_tool_verifier_and_format_weight(tok):
    conv = make_tool_dataset("arithmetic", 1, seed=0)[0]
    ex = {"prompt": conv[:1], "answer": "calculator", "kind": "tool"}
    run = _reference_run(conv, tok)
    assert reward(ex, run, tok) == 1.0
    run.calls = [ToolCall("calculator", "2 +", "Error: invalid syntax")]
    assert reward(ex, run, tok) == 0.0
    run.calls = [ToolCall("search", "2 + 2", "nothing")]  # a valid call, but not the tool asked for
    assert reward(ex, run, tok) == 0.0
    good = _reference_run(conv, tok)
    arith = rl_prompts("arithmetic", 1)[0]
    cfg = RewardConfig(format=0.1)
    assert reward(arith, good, tok, cfg) == pytest.approx(1.1)
    good.finished = False  # ran out of tokens: no format bonus
    assert reward(arith, good, tok, cfg) == pytest.approx(1.0)
    assert correctness(arith, good, tok) == 1.0
    with pytest.raises(ValueError, match="must be >= 0"):
        RewardConfig(format=-1)
    with pytest.raises(ValueError, match="no verifier"):
        reward({"kind": "poetry"}, good, tok)

