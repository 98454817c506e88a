"""The consolidation job: topic adapters that fit their facts, replay recorded from the model
before the update, week07's EWC on the shared adapter, a killed job that resumes to the same
end, progress in status(), and forget retraining / deleting the adapters."""

import shutil
import subprocess
import sys
import time

import pytest
import torch

from week04_modern_arch_tools import generate_with_tools
from week07_continual import EWC, collate, lm_loss
from week12_nanochat.engine import default_tools
from week12_nanochat.memory import Memory, MemoryConfig
from week12_nanochat.memorydata import (
    examples_of,
    fact_conversations,
    fact_prompts,
    replay_prompts,
    second_person,
)

FAST = dict(encoder="hash", min_score=0.25, progress=False, shared_steps=8, topic_steps=24,
            steps_per_fact=10, lora_r=8,
            lr=1e-2, batch_size=8, replay_prompts=6, replay_tokens=16, replay_capacity=32,
            fisher_examples=8, ckpt_every=4,
            base_prompts=0)  # a hashed bag of words finds "does" in the base's questions too:
#                              the base gate is tested with MiniLM (test_memory.py)


def _memory(folder, model, tok, **kw):
    return Memory(folder, model, tok, MemoryConfig(**{**FAST, **kw}))


def _teach(mem):
    a = mem.teach("My dog is called Ravenlo. My cat is called Zanmi.", topic="pet",
                  questions=None)
    b = mem.teach("Grathon lives in Mirabridge.", topic="home",
                  questions=["Where does Grathon live?"])
    return a + b


def _loss(mem, facts, name):
    """Mean loss on the facts' training conversations through the bank, with ``name``'s chain
    (None: the bare base)."""
    exs = examples_of(fact_conversations(facts, reading=False), mem.tokenizer, 256)
    x, y = collate(exs)
    plan = mem.library.plan([name] * len(exs)) if name else None
    with torch.no_grad(), mem.library.bank.use(plan):
        return float(lm_loss(mem.model, x, y))


@pytest.mark.core
def test_topic_adapters_fit_their_facts_and_plan_names_them(tmp_path, tool_model, chat_tok):
    mem = _memory(tmp_path / "m", tool_model, chat_tok)
    facts = _teach(mem)
    assert mem.status()["state"] == "idle" and mem.status()["pending"] == ["pet", "home"]
    status = mem.consolidate(background=False)
    assert status["state"] == "done" and status["step"] == status["steps"] == 8 + 2 * 24
    assert sorted(mem.library.names()) == ["memory", "memory/home", "memory/pet"]
    assert mem.library.resolve("memory/pet") == [("memory", 1.0), ("memory/pet", 1.0)]
    pets = facts[:2]
    before, after = _loss(mem, pets, None), _loss(mem, pets, "memory/pet")
    assert after < 0.7 * before, (before, after)
    plan = mem.plan("What is my dog called?")  # consolidated: the adapter, closed-book
    assert (plan.adapter, plan.rag, plan.label) == ("memory/pet", False, "memory/pet")
    assert mem.plan("Where does Grathon live?").label == "memory/home"
    assert mem.status()["pending"] == [] and mem.taught == []
    # the router (week10 PrototypeRouting) holds a prototype per topic adapter, and survives
    assert sorted(mem.router.names) == ["memory/home", "memory/pet"]
    mem.close()
    again = _memory(tmp_path / "m", tool_model, chat_tok)
    assert sorted(again.router.names) == ["memory/home", "memory/pet"]
    assert sorted(again.library.names()) == sorted(mem.library.names())
    again.close()
    both = _memory(tmp_path / "m", tool_model, chat_tok, rag_with_adapter=True, min_score=0.2)
    plan = both.plan("What is my dog called?")
    assert plan.adapter == "memory/pet" and plan.rag and plan.reserve > 0
    both.close()


@pytest.mark.core
def test_training_pairs_from_free_text():
    from week12_nanochat.memory import Fact

    fact = Fact("x1", "My dog is called Ravenlo.", "pet", "", "now", ["What is my dog called?"])
    assert second_person(fact.text) == "Your dog is called Ravenlo."
    assert fact_prompts(fact) == ["What is my dog called?", "What do you know about my dog?",
                                  "Tell me what I said about my dog."]
    convs = fact_conversations([fact])
    assert convs[0] == [{"role": "user", "content": "What is my dog called?"},
                        {"role": "assistant", "content": "Your dog is called Ravenlo."}]
    assert "[1] memory-pet-x1#0: My dog is called Ravenlo." in convs[1][0]["content"]
    assert convs[1][1]["content"] == "Your dog is called Ravenlo [1]."


@pytest.mark.core
def test_replay_is_what_the_model_generated_before_the_update(tmp_path, tool_model, chat_tok):
    prompts = replay_prompts(FAST["replay_prompts"], 0, reading=False)
    tools = default_tools(repl=False)
    before = {}
    for kind, ps in prompts.items():  # the base's own greedy replies, tools run
        runs = generate_with_tools(tool_model, chat_tok, ps, tools, max_new_tokens=16)
        before[kind] = [(list(r.prompt) + r.ids, [0] * len(r.prompt) + [int(not f) for f in
                                                                        r.forced]) for r in runs]
    mem = _memory(tmp_path / "m", tool_model, chat_tok)
    _teach(mem)
    mem.consolidate(background=False)
    from week07_continual import ReplayBuffer

    buf = ReplayBuffer.load(tmp_path / "m" / "replay")
    assert set(buf.counts()) == {"arithmetic", "facts"}
    for kind in prompts:
        got = [(e["ids"], e["mask"]) for e in buf.examples(kind)]
        assert got and all(g in before[kind] for g in got)
    assert any(e["mask"].count(0) > len(e["mask"]) // 2 for e in buf.examples("facts"))
    mem.close()


@pytest.mark.core
def test_the_shared_adapter_carries_week07_ewc_across_jobs(tmp_path, tool_model, chat_tok):
    mem = _memory(tmp_path / "m", tool_model, chat_tok)
    _teach(mem)
    mem.consolidate(background=False)
    state, _ = mem.library.store.load_blob("ewc")
    first = mem.library.store.entry("memory")["sha256"]
    # the anchor is the shared adapter as the first job stored it
    stored, _ = __import__("shared").load_checkpoint(mem.library.store.verified_path("memory"))
    anchor = state["anchor"]
    assert anchor and all(torch.equal(v, stored[k.rsplit(".lora.", 1)[0] + "." + k[-1]])
                          for k, v in anchor.items())
    mem.teach("My parrot is called Olbre.", topic="pet")
    plan_steps = []
    real = EWC.penalty

    def spy(self, model):  # the second job's loss adds week07's penalty, anchored there
        value = real(self, model)
        plan_steps.append(float(value))
        return value

    EWC.penalty = spy
    try:
        mem.consolidate(background=False)
    finally:
        EWC.penalty = real
    assert len(plan_steps) == FAST["shared_steps"]
    assert plan_steps[0] == 0.0 and max(plan_steps) > 0.0  # at the anchor, then pulled back
    assert mem.library.store.entry("memory")["sha256"] != first
    mem.close()


KILLED = """
import sys
from shared import load_model
from week02_bpe import BPETokenizer
from week12_nanochat.memory import Memory, MemoryConfig
model = load_model(sys.argv[2]).eval()
tok = BPETokenizer.load(sys.argv[3])
mem = Memory(sys.argv[1], model, tok, MemoryConfig(**{FAST}))
mem.consolidate(background=False)
"""


@pytest.mark.core
def test_a_killed_job_resumes_and_ends_equal_to_an_uninterrupted_one(tmp_path, tool_model,
                                                                      chat_tok):
    from shared import load_checkpoint, save_model

    mem = _memory(tmp_path / "a", tool_model, chat_tok)
    _teach(mem)
    mem.library.bank.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same facts (ids) in both
    save_model(tmp_path / "model.safetensors", tool_model)
    chat_tok.save(tmp_path / "tok.json")
    script = tmp_path / "job.py"
    script.write_text(KILLED.replace("{FAST}", repr(FAST)))
    # the first topic phase (after 8 shared steps) dies at its step 12 (checkpoint at 12)
    env = {**__import__("os").environ, "NANOCHAT_KILL_AT_STEP": "12", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "b"),
                          str(tmp_path / "model.safetensors"), str(tmp_path / "tok.json")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == -9, run.stderr[-2000:]
    resumed = _memory(tmp_path / "b", tool_model, chat_tok)
    assert resumed.status()["state"] == "idle" and resumed.status()["resumable"]
    assert "memory" in resumed.library and "memory/home" not in resumed.library
    assert resumed.consolidate(background=False)["state"] == "done"
    whole = _memory(tmp_path / "a", tool_model, chat_tok)
    whole.consolidate(background=False)
    assert sorted(resumed.library.names()) == sorted(whole.library.names())
    for name in whole.library.names():
        a, _ = load_checkpoint(whole.library.store.verified_path(name))
        b, _ = load_checkpoint(resumed.library.store.verified_path(name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert resumed.status()["state"] == "done" and resumed.pending == whole.pending == []
    resumed.close()
    whole.close()


@pytest.mark.core
def test_status_reports_a_background_job_as_it_runs(tmp_path, tool_model, chat_tok):
    mem = _memory(tmp_path / "m", tool_model, chat_tok, topic_steps=40)
    _teach(mem)
    thread = mem.consolidate(background=True)
    seen = []
    while thread.is_alive():
        seen.append(mem.status())
        time.sleep(0.02)
    final = mem.status()
    running = [s for s in seen if s["state"] == "running"]
    assert running and any(0 < s["step"] < s["steps"] for s in running)
    steps = [s["step"] for s in running]
    assert steps == sorted(steps) and {s["topic"] for s in running} >= {"home", "pet"}
    assert final["state"] == "done" and final["step"] == final["steps"] == 8 + 80
    mem.close()


@pytest.mark.core
def test_forget_retrains_the_topic_adapter_or_deletes_it(tmp_path, tool_model, chat_tok):
    mem = _memory(tmp_path / "m", tool_model, chat_tok)
    dog, cat, grathon = _teach(mem)
    mem.consolidate(background=False)
    assert mem.library.meta("memory/pet")["facts"] == [dog.id, cat.id]
    mem.forget(fact_id=cat.id)
    assert mem.shared_stale and mem.pending == ["pet"]
    mem.forget(fact_id=grathon.id)
    mem.consolidate(background=False)
    assert mem.library.meta("memory/pet")["facts"] == [dog.id]  # retrained without the cat
    assert "memory/home" not in mem.library  # its topic is empty
    assert not mem.shared_stale and mem.pending == []
    assert mem.plan("Where does Grathon live?").adapter is None
    mem.forget(fact_id=dog.id)
    mem.consolidate(background=False)
    assert mem.library.names() == [] and mem.router.names == []
    assert mem.router.route(["What is my dog called?"]) == [None]
    mem.close()


@pytest.mark.core
def test_no_adapter_changes_under_a_reply_that_decodes_with_it(tmp_path, tool_model, chat_tok):
    """A batch served with a memory adapter holds ``memory.serving`` to its last token: a
    publish (``publishing()``, what the job does) waits for it; a plain batch never blocks."""
    import threading

    from week12_nanochat.engine import ChatEngine, Sampling

    mem = _memory(tmp_path / "m", tool_model, chat_tok)
    _teach(mem)
    mem.consolidate(background=False)
    engine = ChatEngine(tool_model, chat_tok, tools={}, memory=mem)
    published = threading.Event()

    def publish():
        with mem.publishing():
            published.set()

    stream = engine.stream(["What is my dog called?"], Sampling(max_tokens=12))
    assert stream.serving.plan is not None  # the pet adapter decodes this batch
    events = iter(stream)
    next(events)
    worker = threading.Thread(target=publish)
    worker.start()
    assert not published.wait(0.3)  # mid-reply: the publish waits
    rest = list(events)
    assert rest[-1].kind == "done" and rest[-1].reply.memory == "memory/pet"
    assert published.wait(10)  # the batch ended: the publish goes through
    worker.join()
    plain = engine.stream(["hello"], Sampling(max_tokens=4))  # plan: no adapter
    assert plain.serving.plan is None
    published.clear()
    worker = threading.Thread(target=publish)
    worker.start()
    assert published.wait(10)  # not held by a batch that never reads the adapters
    worker.join()
    plain.run()
    dropped = engine.stream(["What is my dog called?"], Sampling(max_tokens=4))
    del dropped  # a stream never iterated lets go when it is collected
    with mem.publishing():
        pass
    mem.close()


@pytest.mark.core
def test_a_memory_question_joins_a_running_plain_batch_with_its_adapter(tmp_path, tool_model,
                                                                        chat_tok):
    """Continuous batching with the memory: a question its plan sends to a topic adapter
    joins a batch that had no adapter (week10's ``Serving.add``), is answered as alone, and
    from then on the batch holds the adapters still (a publish waits for its end)."""
    import threading

    from week12_nanochat.engine import ChatEngine, Sampling

    mem = _memory(tmp_path / "m", tool_model, chat_tok)
    _teach(mem)
    mem.consolidate(background=False)
    engine = ChatEngine(tool_model, chat_tok, tools={}, memory=mem)
    question = "What is my dog called?"
    alone = engine.reply(question, Sampling(max_tokens=12))
    assert alone.memory == "memory/pet"
    stream = engine.stream(["hello there"], Sampling(max_tokens=24), continuous=True)
    assert not stream.serving.uses_adapters and stream._held is None
    events = iter(stream)
    next(events)
    assert stream.add([question]) == [1]
    assert stream.serving.uses_adapters and stream._held is mem.serving
    published = threading.Event()

    def publish():
        with mem.publishing():
            published.set()

    worker = threading.Thread(target=publish)
    worker.start()
    assert not published.wait(0.3)  # an adapter row is decoding: the publish waits
    replies = {e.request: e.reply for e in events if e.kind == "done"}
    assert replies[1].text == alone.text and replies[1].memory == "memory/pet"
    assert published.wait(10)  # the batch ended: the adapters are free to change
    worker.join()
    mem.close()
