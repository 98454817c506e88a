"""The fact world: its data keep the new world out of the reader's training, its conversations
are what Hydra serves, and the smoke run fills the five-condition exact-match table."""

import pytest
import torch

from week04_modern_arch_tools.tooldata import make_world
from week10_hydra.factworld import (
    ADAPTER,
    CONDITIONS,
    SEARCH_SYSTEM,
    build,
    conversations,
    documents,
    evaluate,
    exact_match,
    make_store,
    markdown_table,
    new_world,
    preset,
    questions,
    run,
    train_world,
    training_text,
)
from week10_hydra.hydra import Request

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")


@pytest.fixture(scope="module")
def cfg():
    return preset("smoke", progress=False)


@pytest.fixture(scope="module")
def train_store(cfg):
    return make_store(cfg, documents(train_world(cfg), cfg.train_seed))


@pytest.fixture(scope="module")
def smoke(cfg, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, run(cfg, root=root, n_train_eval=6)


# ---------------------------------------------------------------- the data


def test_new_world_facts_never_reach_the_readers_training(cfg, train_store):
    convs = conversations(questions(train_world(cfg), cfg.attributes), train_store, cfg)
    text = training_text([c for cs in convs.values() for c in cs])
    fresh = new_world(cfg)
    assert len(fresh) == cfg.n_new
    for c in fresh:  # no new country, and no new capital, is ever written in training
        assert c["name"] not in text and c["capital"] not in text
    # the whole train world (not just the countries used) shares no name with the new one
    taken = {v for c in make_world(cfg.train_seed, 120) for v in (c["name"], c["capital"])}
    assert not taken & {v for c in fresh for v in (c["name"], c["capital"])}
    assert {d.name for d in documents(fresh, cfg.new_seed)}.isdisjoint(train_store.doc_names)
    # and every train country is in the training text, in every kind of conversation
    assert set(convs) == {"closed", "search", "rag", "both"}
    for c in train_world(cfg):
        assert all(c["name"] in training_text(cs) for cs in convs.values())


def test_questions_and_documents_agree_with_the_world(cfg):
    world = new_world(cfg)
    by_name = {c["name"]: c for c in world}
    docs = {d.name: d.text for d in documents(world, cfg.new_seed)}
    qs = questions(world, cfg.attributes)
    assert len(qs) == len(world) * len(cfg.attributes)
    for q in qs:
        truth = str(by_name[q.country][q.attribute])
        assert q.value == truth
        assert q.country in q.question and q.country in q.query
        assert exact_match(q.answer, q.value)  # the taught sentence states the value
        assert truth in docs[q.country.lower()]  # the store's document states it too
    for q, other in zip(qs, qs[len(cfg.attributes):]):  # same attribute, next country
        if other.value != q.value:
            assert not exact_match(other.answer, q.value)


def test_exact_match_is_whole_words_ignoring_case_and_punctuation(cfg):
    for q in questions(new_world(cfg), ("founded", "capital")):
        assert exact_match(q.answer.upper().replace(" ", "  "), q.value)
        assert not exact_match(q.answer.replace(q.value, q.value + "0"), q.value)
        assert not exact_match(q.answer.replace(q.value, ""), q.value)


def test_training_conversations_are_what_hydra_serves(cfg, train_store, chat_tok, make_llama):
    """The search turns hold what Hydra's search tool prints, the RAG turns what Hydra renders
    (a Hydra over the same store)."""
    from week10_hydra.hydra import Hydra

    hydra = Hydra(make_llama(chat_tok.vocab_size), chat_tok, store=train_store, rag_k=cfg.rag_k,
                  rag_chars=cfg.rag_chars)
    qs = questions(train_world(cfg), cfg.attributes)[:6]
    convs = conversations(qs, train_store, cfg)
    tool = hydra.tools["search"]
    for q, conv in zip(qs, convs["search"]):
        assert conv[0] == {"role": "system", "content": SEARCH_SYSTEM}
        call, output, answer = conv[-1]["content"]
        assert call["text"] == f"search: {q.query}" and output["text"] == tool.run(q.query)
        assert answer["text"] == q.answer
    for kind, system in (("rag", []), ("both", [{"role": "system", "content": SEARCH_SYSTEM}])):
        for q, conv in zip(qs, convs[kind]):
            asked = system + [{"role": "user", "content": q.question}]
            hits = hydra._retrieve([Request(asked, rag=True)])[0]
            assert conv[:-1] == hydra.render_rag(asked, hits)
            assert conv[-1]["content"].startswith(q.answer[:-1])  # + the citation


# ---------------------------------------------------------------- the run


def test_smoke_run_fills_the_five_condition_table(cfg, smoke):
    _, result = smoke
    rows = result["rows"]
    assert list(rows) == list(CONDITIONS)
    for r in rows.values():
        assert 0.0 <= r["em"] <= 1.0 and 0.0 <= r["calls"] <= 1.0
        assert r["n"] == cfg.n_new * len(cfg.attributes)
        assert set(r["per_attribute"]) == set(cfg.attributes)
        assert 0.0 <= r["train_world_em"] <= 1.0
    # measured at this size (seeds 0-2): the adapter knows 33-67% of its 12 facts, the base
    # alone 0-8% (a currency guessed): the facts come from the bank, served through Hydra
    assert rows["+fact adapter"]["em"] > rows["base"]["em"]
    table = markdown_table(result)
    assert all(f"| {name} |" in table for name in CONDITIONS)


@pytest.fixture(scope="module")
def world(cfg, smoke):
    return build(cfg, root=smoke[0])


def test_the_reader_is_cached_and_the_adapter_is_in_the_bank(cfg, smoke, world):
    root, _ = smoke
    assert "cached" in world.info  # the second build loads the reader instead of training
    assert world.hydra.bank.names() == [ADAPTER]
    ref = build(cfg, root=root, cache=False)  # retrained from scratch: the same weights
    for (k, a), (_, b) in zip(world.hydra.base.state_dict().items(),
                              ref.hydra.base.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_evaluate_refuses_bad_input(world):
    hydra = world.hydra
    with pytest.raises(ValueError, match="unknown condition"):
        evaluate(hydra, ["q"], ["a"], "+magic")
    with pytest.raises(ValueError, match="as many answers"):
        evaluate(hydra, ["q", "r"], ["a"], "base")
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ValueError, match="attributes"):
        preset("smoke", attributes=("colour",))
