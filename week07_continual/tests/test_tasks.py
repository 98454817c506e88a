"""Task streams and scoring: exact match equals greedy decoding; bpb equals week02's formula."""

import json

import pytest
import torch
import torch.nn.functional as F

from week02_bpe import BPETokenizer, bits_per_byte, token_bytes
from week07_continual import Stream, Task, collate, load_stream, make_skills_stream, score_examples
from week07_continual.tasks import doc_group, make_domains_stream, prompt_ids

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.fixture(scope="module")
def tok():
    text = "What is the capital of Kalora? The currency is the grel. " * 20
    return BPETokenizer.train(text, 256 + 9 + 30)


def test_collate_shifts_and_masks():
    x, y = collate([{"ids": [5, 6, 7, 8], "mask": [0, 0, 1, 1]}, {"ids": [1, 2], "mask": [0, 1]}])
    assert x.tolist() == [[5, 6, 7], [1, 0, 0]]
    assert y.tolist() == [[-1, 7, 8], [2, -1, -1]]


def test_exact_match_equals_greedy_generation(tiny_llama, two_task_stream):
    """Teacher-forced argmax over the answer == greedy decoding then comparing the answer."""
    task = two_task_stream.tasks[0]
    with torch.no_grad():  # make some answers right: bias the head towards a few answer tokens
        tiny_llama.lm_head.weight[24:30] += 0.5 * torch.randn(
            6, tiny_llama.config.n_embd, generator=torch.Generator().manual_seed(0))
    fast = score_examples(tiny_llama, task.test, "exact_match")
    hits = 0
    for ex in task.test:
        first = ex["mask"].index(1)
        prompt = torch.tensor([ex["ids"][:first]])
        out = tiny_llama.generate(prompt, max_new_tokens=len(ex["ids"]) - first, temperature=0)
        hits += out[0, first:].tolist() == ex["ids"][first:]
    assert fast == hits / len(task.test)


def test_bpb_matches_week02(tiny_llama, tok):
    exs = [{"ids": tok.encode("The currency is the grel.")[:12], "mask": None}]
    exs[0]["mask"] = [0] + [1] * (len(exs[0]["ids"]) - 1)
    model = torch.nn.Sequential(torch.nn.Embedding(tok.vocab_size, 8),
                                torch.nn.Linear(8, tok.vocab_size))
    tb = token_bytes(tok)
    got = score_examples(model, exs, "bpb", token_bytes=tb)
    x, y = collate(exs)
    nats = F.cross_entropy(model(x).transpose(1, 2), y, reduction="none")
    assert got == pytest.approx(bits_per_byte(nats, y, tb), rel=1e-9)


def test_skills_stream_builds_on_week04(tok):
    s = make_skills_stream(tok, n_train=4, n_test=2, n_facts=5)
    assert s.task_names == ["arithmetic", "string", "facts", "new_facts"]
    assert s.metric == "exact_match" and s.higher_is_better
    ex = s.tasks[2].train[0]  # a search conversation: the tool output is not trained on
    assert 0 < sum(ex["mask"]) < len(ex["mask"])
    assert tok.decode(ex["ids"]).count("search:") == 1
    facts = make_skills_stream(tok, n_facts=5, variant="facts")
    assert facts.task_names == ["capital", "currency", "language", "new_facts"]
    answer = [i for i, m in zip(facts.tasks[3].train[0]["ids"], facts.tasks[3].train[0]["mask"])
              if m]
    assert tok.decode(answer[:-1]) in ("lynx heron otter falcon badger ibis marten tapir gecko "
                                       "puffin vole egret").split()
    # what the README says each task is tested on: a fact task on the very questions it
    # taught, a tool task on held-out problems of the same generator
    assert all(t.test == t.train for t in facts.tasks) and s.tasks[3].test == s.tasks[3].train
    assert all(not any(e in t.train for e in t.test) for t in s.tasks[:3])
    with pytest.raises(ValueError, match="variant"):
        make_skills_stream(tok, variant="nope")


def test_domains_groups_and_bpb_stream(tok):
    from shared import Corpus, Document

    assert doc_group("topic:assert") == "language"
    assert doc_group("doc:asyncio.tasks.Task") == "concurrency"
    assert doc_group("doc:json.loads") is None
    docs = tuple(Document(f"doc:{m}.x{i}", f"text about {m} number {i} " * 30)
                 for m in ("email", "asyncio", "tkinter") for i in range(12)) + tuple(
        Document(f"topic:t{i}", f"language topic {i} " * 30) for i in range(12))
    s = make_domains_stream(tok, n_train=3, n_test=2, seq_len=16, corpus=Corpus("fake", docs, 0.3))
    assert s.task_names == ["language", "web_mail", "concurrency", "gui"]
    assert s.metric == "bpb" and not s.higher_is_better
    assert all(len(e["ids"]) == 16 for t in s.tasks for e in t.train)


def test_custom_stream_from_jsonl(tok, tmp_path):
    (tmp_path / "01_first.jsonl").write_text("\n".join(
        json.dumps({"prompt": f"q{i}", "answer": f"a{i}", "split": "test" if i < 2 else "train"})
        for i in range(6)))
    (tmp_path / "02_second.jsonl").write_text("\n".join(
        json.dumps({"messages": [{"role": "user", "content": f"x{i}"},
                                 {"role": "assistant", "content": f"y{i}"}],
                    "split": "test" if i == 0 else "train"}) for i in range(4)))
    s = load_stream(tmp_path, tok)
    assert s.task_names == ["01_first", "02_second"]
    assert len(s.tasks[0].test) == 2 and len(s.tasks[0].train) == 4
    (tmp_path / "03_bad.jsonl").write_text('{"oops": 1}\n')
    with pytest.raises(ValueError, match="needs 'text'"):
        load_stream(tmp_path, tok)
    with pytest.raises(ValueError, match="folder"):
        load_stream(tmp_path / "missing", tok)


def test_bad_tasks_and_streams_raise(two_task_stream):
    ex = two_task_stream.tasks[0].train
    with pytest.raises(ValueError, match="metric"):
        Task("x", ex, ex, metric="f1")
    with pytest.raises(ValueError, match="mixes metrics"):
        Stream("s", [Task("a", ex, ex), Task("b", ex, ex, metric="bpb")])
    assert prompt_ids(ex[0]) == ex[0]["ids"][:6]  # everything before the first answer token
