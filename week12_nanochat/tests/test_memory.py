"""The retrieval memory: teach answers at once (the fact is in the RAG prompt), forget removes
it everywhere, and a folder reopens with every fact; bad input gets clear errors."""

import json
import os

import pytest

from week10_hydra.rag import rag_messages
from week12_nanochat.engine import ChatEngine, Sampling
from week12_nanochat.memory import Memory, MemoryConfig, MemoryPlan, split_facts
from week12_nanochat.teachdata import make_facts

pytestmark = pytest.mark.core

HASH = MemoryConfig(encoder="hash", min_score=0.3, progress=False)


@pytest.fixture(scope="module")
def minilm():
    from week10_hydra.encoders import MiniLMEncoder

    return MiniLMEncoder()


@pytest.fixture
def memory(tmp_path, tool_model, chat_tok):
    mem = Memory(tmp_path / "mem", tool_model, chat_tok, HASH)
    yield mem
    mem.close()


def _prompt_of(engine, question):
    """The conversation Hydra decodes for ``question`` under the memory's plan."""
    plan = engine.memory.plan(question)
    hits = engine.hydra.store.search_batch([question], k=engine.hydra.rag_k)[0]
    msgs = [{"role": "user", "content": question}]
    return plan, engine.hydra.render_rag(msgs, hits) if plan.rag else msgs


def test_teach_splits_sentences_and_plan_retrieves_the_fact_into_the_prompt(memory, tool_model,
                                                                             chat_tok):
    facts = memory.teach("My dog is called Ravenlo. The code for my garage is 4821.",
                         topic="home")
    assert [f.text for f in facts] == ["My dog is called Ravenlo.",
                                       "The code for my garage is 4821."]
    assert {f.topic for f in facts} == {"home"} and len({f.id for f in facts}) == 2
    engine = ChatEngine(tool_model, chat_tok, memory=memory)
    plan, prompt = _prompt_of(engine, "What is my dog called?")
    assert plan.rag and plan.label == "retrieval" and plan.adapter is None
    assert "My dog is called Ravenlo." in prompt[-1]["content"]
    # the reserve is exactly the tokens the sources add to the question
    want = rag_messages([{"role": "user", "content": "What is my dog called?"}],
                        engine.hydra.store.search("What is my dog called?", k=3), 1200)
    assert plan.reserve == len(chat_tok.encode(want[-1]["content"])) - len(
        chat_tok.encode("What is my dog called?"))
    reply = engine.reply("What is my dog called?", Sampling(max_tokens=8), tools=False)
    assert reply.memory == "retrieval"
    assert any("Ravenlo" in s.text for s in reply.sources)
    # far from every fact: the plain model, nothing retrieved
    assert memory.plan("Compute 17 * 23 please").rag is False


def test_paraphrase_retrieval_finds_the_fact_with_minilm(tmp_path, make_llama, chat_tok, minilm):
    facts = make_facts(12, seed=3, split="test")
    model = make_llama(chat_tok.vocab_size, block_size=512)  # room for three sources
    mem = Memory(tmp_path / "m", model, chat_tok, MemoryConfig(progress=False), encoder=minilm)
    for f in facts:
        mem.teach(f.text, topic=f.kind)
    found = 0
    for f in facts:
        plan = mem.plan(f.paraphrases[0])
        hits = mem.store.search(f.paraphrases[0], k=3)
        found += plan.rag and any(h.text == f.text for h in hits)
    assert found / len(facts) >= 0.9
    assert not mem.plan("What is 12 plus 30?").rag  # arithmetic is not about the taught facts
    mem.close()


def test_the_base_tool_questions_stay_with_the_plain_model_and_the_paraphrases_do_not(
        tmp_path, make_llama, chat_tok, minilm):
    """50 taught facts: without the base gate, held-out tool questions (their names sound like
    the taught ones) go to the memory; with it (the default) none does, and the paraphrases of
    the facts still reach them."""
    from week05_eval import tool_task

    facts = make_facts(50, seed=0, split="test")
    tools = [e.question for kind in ("arithmetic", "string", "facts")
             for e in tool_task(kind, n=30, seed=0).examples]
    model = make_llama(chat_tok.vocab_size, block_size=512)
    routed = {}
    for n in (0, 60):
        mem = Memory(tmp_path / f"m{n}", model, chat_tok,
                     MemoryConfig(progress=False, base_prompts=n), encoder=minilm)
        for f in facts:
            mem.teach(f.text, topic=f.kind)
        plans = [mem.plan(q) for q in tools]
        routed[n] = sum(p.rag or p.adapter is not None for p in plans) / len(tools)
        recall = sum(mem.plan(f.paraphrases[0]).rag for f in facts) / len(facts)
        assert recall >= 0.9, (n, recall)
        mem.close()
    assert routed[0] > 0.1 and routed[60] == 0, routed


def test_sources_that_would_overflow_the_context_are_not_retrieved(memory):
    """A 256-token model with a 400-token vocabulary: three long facts do not fit."""
    memory.teach(" ".join(f"My friend's {w} from the old farm by the river is called Ravenlo{w}." for w in
                          ("dog", "cat", "parrot", "horse", "rabbit", "hamster")))
    assert memory.plan("What is my friend's dog called?") == MemoryPlan()


def test_forget_removes_the_fact_from_store_facts_and_plan(memory):
    keep, gone = memory.teach("My cat is called Zanmi. My parrot is called Olbre.", topic="pet")
    assert memory.forget(fact_id=gone.id) == [gone]
    assert [f.id for f in memory.facts()] == [keep.id]
    assert all("Olbre" not in c.text for c in memory.store.chunks)
    assert memory.store.doc_names == {keep.doc}
    assert "Olbre" not in " ".join(h.text for h in memory.store.search("parrot Olbre", k=3))
    # forget by query takes the nearest fact
    assert memory.forget(query="my cat Zanmi") == [keep]
    assert memory.facts() == [] and memory.plan("What is my cat called?").rag is False
    with pytest.raises(KeyError, match="no fact"):
        memory.forget(fact_id="nope")
    with pytest.raises(ValueError, match="exactly one"):
        memory.forget()


def test_a_new_memory_from_the_folder_has_every_fact_and_the_store(tmp_path, tool_model,
                                                                   chat_tok):
    mem = Memory(tmp_path / "mem", tool_model, chat_tok, HASH)
    taught = mem.teach("Grathon lives in Mirabridge. Vekul works as a pilot.", topic="people",
                       user="alice")
    mem.close()
    again = Memory(tmp_path / "mem", tool_model, chat_tok, HASH)
    assert again.facts() == taught
    assert again.store.doc_names == {f.doc for f in taught}
    assert again.pending == ["alice-people"]
    assert [h.text for h in again.store.search("Where does Grathon live?", k=1)] == \
        ["Grathon lives in Mirabridge."]
    again.close()


def test_a_memory_opened_and_closed_without_a_fact_reopens(tmp_path, tool_model, chat_tok):
    """`make serve` started and stopped before anything was taught: the folder it made (the
    adapter library's) is a Memory's, and the next start opens it."""
    Memory(tmp_path / "mem", tool_model, chat_tok, HASH).close()
    again = Memory(tmp_path / "mem", tool_model, chat_tok, HASH)
    assert again.facts() == [] and again.plan("What is my dog called?") == MemoryPlan()
    again.close()


def test_a_save_killed_between_its_writes_reopens_consistent(tmp_path, tool_model, chat_tok,
                                                             monkeypatch):
    """The facts file is the commit point: a teach whose facts write fails leaves the old facts
    (and the store, written first, is rebuilt to match them when the folder reopens)."""
    mem = Memory(tmp_path / "mem", tool_model, chat_tok, HASH)
    first = mem.teach("My dog is called Ravenlo.")
    before = (tmp_path / "mem" / "memory.json").read_text()
    import week12_nanochat.memory as memory_module

    def killed(path, obj, indent=2):  # dies after the temp file, before os.replace
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(obj)[:20])
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(memory_module, "write_json_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        mem.teach("My cat is called Zanmi.")
    monkeypatch.undo()
    assert (tmp_path / "mem" / "memory.json").read_text() == before
    again = Memory(tmp_path / "mem", tool_model, chat_tok, HASH)
    assert again.facts() == first
    assert again.store.doc_names == {first[0].doc}  # the store's extra fact is gone
    again.close()
    mem.library.bank.close()


def test_bad_input_gets_clear_errors(tmp_path, memory, tool_model, chat_tok):
    with pytest.raises(ValueError, match="non-empty text"):
        memory.teach("   ")
    with pytest.raises(ValueError, match="topic must be"):
        memory.teach("My dog is called Rex.", topic="a b")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="written by something else"):
        Memory(other, tool_model, chat_tok, HASH)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "memory.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(Exception, match="is not a week12-memory"):
        Memory(bad, tool_model, chat_tok, HASH)
    with pytest.raises(ValueError, match="encoder"):
        MemoryConfig(encoder="bert")
    assert split_facts("One fact.  Two facts!\nThree?") == ["One fact.", "Two facts!", "Three?"]
