"""Synthetic tool-use data: deterministic, split without overlap, outputs of the real tools."""

import re

import pytest

from week04_modern_arch_tools import (
    Calculator,
    PythonREPL,
    fact_search,
    make_fact_store,
    make_tool_dataset,
    render_conversation,
)
from week04_modern_arch_tools.tooldata import make_world

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


def test_string_answers_are_token_copies_of_the_output():
    """The answer is the printed value, so its tokens are the output's (newline aside); in a
    sentence the value follows a space and BPE cuts it into other tokens."""
    from week04_modern_arch_tools import fit_tokenizer

    convs = make_tool_dataset("string", 200)
    tok = fit_tokenizer(convs, vocab_size=400)
    moved = 0
    for conv in convs:
        _, output, answer = [p["text"] for p in conv[1]["content"]]
        assert answer == output.removesuffix("\n")
        assert tok.encode(output)[:len(tok.encode(answer))] == tok.encode(answer)
        ids, sentence = tok.encode(answer), tok.encode(f"The answer is {answer}.")
        moved += not any(sentence[i:i + len(ids)] == ids for i in range(len(sentence)))
    assert moved > 20  # " TENSOR" is not "TENSOR": in the old sentence it was no copy


def test_fact_outputs_come_from_search_and_are_the_answer():
    """The search tool finds the one fact asked for; the answer says that fact's sentence."""
    search, world = fact_search(0), {c["name"]: c for c in make_world(0)}
    for conv in make_tool_dataset("facts", 60):
        call, output, answer = [p["text"] for p in conv[1]["content"]]
        assert output == search.run(call.removeprefix("search: "))
        source, sentence = output.removeprefix("[1] ").split(": ", 1)
        name, attr = source.split("/")
        country = next(c for n, c in world.items() if n.lower() == name)
        assert sentence == answer and answer.rstrip(".").endswith(str(country[attr]))
        assert attr in call


def test_fact_stores_by_country_and_by_fact():
    countries, facts = make_fact_store(0, 10), make_fact_store(0, 10, per="fact")
    assert len(countries) == 10 and len(facts) == 50
    for doc in facts:  # every fact sentence is in its country's document, word for word
        name, attr = doc.name.split("/")
        value = doc.text.rstrip(".").split()[-1]
        assert value in next(d.text for d in countries if d.name == name)
    with pytest.raises(ValueError, match="valid: country, fact"):
        make_fact_store(0, per="sentence")


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        make_tool_dataset("poetry", 3)
    with pytest.raises(ValueError, match="split"):
        make_tool_dataset("arithmetic", 3, split="val")


def test_fresh_entities_cannot_be_memorised():
    """fresh=True: string words from pydocs outside the fixed 32, facts from many new worlds,
    each answer still the real tool's output; deterministic, and the fixed data unchanged."""
    from week04_modern_arch_tools.tooldata import _WORDS, fresh_words

    assert len(fresh_words()) > 1000 and not set(fresh_words()) & set(_WORDS)
    strings = make_tool_dataset("string", 40, fresh=True)
    assert strings == make_tool_dataset("string", 40, fresh=True)
    quoted = {w for c in strings for w in re.findall(r"'([a-z]{4,9})'", c[0]["content"])}
    assert quoted and not quoted & set(_WORDS)
    with PythonREPL(timeout=10) as repl:
        for conv in strings[:8]:
            call, output, _ = [p["text"] for p in conv[1]["content"]]
            assert repl.run(call.removeprefix("python: ")) == output
    facts = make_tool_dataset("facts", 100, fresh=True)
    fixed = {c["name"] for c in make_world(0)}
    names = {re.search(r"[A-Z]\w+", c[1]["content"][0]["text"])[0] for c in facts}
    assert len(names) > 80 and len(names & fixed) <= 2  # ~5 worlds, not world 0
    for conv in facts[:30]:
        call, output, answer = [p["text"] for p in conv[1]["content"]]
        value = answer.rstrip(".").split()[-1]
        assert value in output and call.startswith("search: ")
    held_out = make_tool_dataset("facts", 20, split="test")  # the eval's: world 0's facts
    assert {re.search(r"[A-Z]\w+", c[1]["content"][0]["text"])[0] for c in held_out} <= fixed
