"""The taught facts: train and test never share a fact, paraphrases are never trained on, and the
reading conversations are week10's RAG prompts whose citation points at the fact."""

import pytest

from week04_modern_arch_tools import render_conversation
from week10_hydra.rag import QUESTION_PREFIX, citations
from week12_nanochat.teachdata import (
    KINDS,
    closed_book,
    correct,
    make_facts,
    reading_conversations,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_splits_are_apart_and_draws_repeat():
    train, test = make_facts(120), make_facts(60, split="test")
    assert make_facts(120) == train and make_facts(120, seed=1) != train
    assert not {(f.subject, f.answer) for f in train} & {(f.subject, f.answer) for f in test}
    assert len({f.key for f in train}) == 120  # one value per subject within a draw
    assert {f.kind for f in test} == set(KINDS)
    for f in train + test:
        assert not set(f.paraphrases) & set(f.questions)
        assert f.answer in f.text and correct(f.reply, f)
        assert not correct(f.reply.replace(f.answer, "Nobody"), f)
    with pytest.raises(ValueError, match="split must be"):
        make_facts(3, split="dev")


def test_reading_conversations_cite_the_fact_among_others(chat_tok):
    facts = make_facts(30)
    convs = reading_conversations(facts, seed=0)
    assert len(convs) == sum(len(f.questions) for f in facts)
    i = 0
    for f in facts:
        for q in f.questions:
            user, reply = convs[i][0]["content"], convs[i][1]["content"]
            lines = user.split("\n")
            sources = [ln for ln in lines if ln.startswith("[")]
            assert len(sources) == 3 and lines[-2] == QUESTION_PREFIX + q
            (n,) = citations(reply)
            assert sources[n - 1].endswith(": " + f.text)  # the cited source is the fact
            assert correct(reply, f)
            ids, mask = render_conversation(convs[i], chat_tok)
            assert 0 < sum(mask) < len(ids)  # the reply is trained, the prompt is not
            i += 1
    book = closed_book(facts, paraphrases=True)
    assert [c[0]["content"] for c in book] == [p for f in facts for p in f.paraphrases]
