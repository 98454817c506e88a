"""Synthetic tool-use data: deterministic, split without overlap, outputs of the real tools."""

import pytest

from week04_modern_arch_tools import (
    Calculator,
    PythonREPL,
    Search,
    make_fact_store,
    make_tool_dataset,
    render_conversation,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

KINDS = ["arithmetic", "string", "facts"]


def question(conv):
    return conv[0]["content"]


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_and_held_out(kind):
    train = make_tool_dataset(kind, 150, seed=1)
    assert train == make_tool_dataset(kind, 150, seed=1)
    test = make_tool_dataset(kind, 40, seed=1, split="test")
    calls = lambda convs: {c[1]["content"][0]["text"] for c in convs}
    assert not calls(train) & calls(test)  # no problem is in both splits
    assert len(calls(train)) > 50


@pytest.mark.parametrize("kind", KINDS)
def test_conversations_render(kind, tokenizer):
    for conv in make_tool_dataset(kind, 10):
        ids, mask = render_conversation(conv, tokenizer)
        assert len(ids) == len(mask) and 0 < sum(mask) < len(mask)


def test_arithmetic_outputs_are_the_calculators():
    calc = Calculator()
    for conv in make_tool_dataset("arithmetic", 100):
        call, output, answer = [p["text"] for p in conv[1]["content"]]
        assert call.startswith("calculator: ")
        assert output == calc.run(call.removeprefix("calculator: "))
        assert not output.startswith("Error") and answer.endswith(f"= {output}.")


def test_string_outputs_are_what_the_repl_prints():
    with PythonREPL(timeout=10) as repl:
        for conv in make_tool_dataset("string", 16):
            call, output, _ = [p["text"] for p in conv[1]["content"]]
            assert repl.run(call.removeprefix("python: ")) == output


def test_fact_outputs_come_from_search_and_hold_the_answer():
    search = Search(make_fact_store(0), top_k=1)
    for conv in make_tool_dataset("facts", 30):
        call, output, answer = [p["text"] for p in conv[1]["content"]]
        assert output == search.run(call.removeprefix("search: "))
        value = answer.rstrip(".").split()[-1]  # the answer's last word is the fact
        assert value in output


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        make_tool_dataset("poetry", 3)
    with pytest.raises(ValueError, match="split"):
        make_tool_dataset("arithmetic", 3, split="val")
