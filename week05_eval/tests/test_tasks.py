"""The real-benchmark loaders on local files written in each dataset's real schema,
and the offline tasks on a small local corpus."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared import load_corpus
from week05_eval import (
    evaluate_mc,
    load_arc,
    load_gsm8k,
    load_hellaswag,
    load_mmlu,
    pydocs_cloze,
    pydocs_next_line,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

ARC_ROWS = [
    {"id": "Mercury_1", "question": "Which gas do plants take in?",
     "choices": {"text": ["oxygen", "carbon dioxide", "helium", "neon"],
                 "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
    {"id": "NYSED_2", "question": "What melts ice?",
     "choices": {"text": ["heat", "cold", "dark"], "label": ["1", "2", "3"]}, "answerKey": "1"},
]
MMLU_ROWS = [
    {"question": "What is 2 + 2?", "subject": "elementary_mathematics",
     "choices": ["3", "4", "5", "6"], "answer": 1},
    {"question": "Which is prime?", "subject": "elementary_mathematics",
     "choices": ["4", "6", "7", "9"], "answer": 2},
]
HELLASWAG_ROWS = [
    {"ind": 4, "activity_label": "Removing ice from car",
     "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman "
              "wearing winter clothes smiles.", "ctx_b": "then",
     "ctx": "...", "endings": [", the man adds wax to the windshield.",
                               ", a person board a ski lift [title] while two men supporting.",
                               ", the man puts on a christmas coat.",
                               ", the man continues removing the snow on his car."],
     "source_id": "activitynet~v_-1IBHYS3L-Y", "split": "train", "split_type": "indomain",
     "label": "3"},
]
GSM_ROWS = [
    {"question": "Natalia sold clips to 48 friends in April, and half as many in May. "
                 "How many in total?",
     "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\n48+24 = <<48+24=72>>72\n#### 72"},
    {"question": "A debt of 1,200 dollars grows by 300. How much is owed?",
     "answer": "1,200 + 300 = 1,500\n#### 1,500"},
    {"question": "It is 3 degrees and drops by 10. What is it now?",
     "answer": "3 - 10 = -7\n#### -7"},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_arc_from_parquet(tmp_path):
    files = {"test": _parquet(tmp_path / "test.parquet", ARC_ROWS),
             "train": _parquet(tmp_path / "train.parquet", ARC_ROWS[:1])}
    task = load_arc("ARC-Challenge", split="test", data_files=files, fewshot_split="train",
                    cache_dir=str(tmp_path / "cache"))
    assert task.name == "arc_challenge" and len(task.examples) == 2
    ex = task.examples[0]
    assert ex.context == "Question: Which gas do plants take in?\nAnswer:"
    assert ex.choices == [" oxygen", " carbon dioxide", " helium", " neon"] and ex.gold == 1
    assert task.examples[1].gold == 0          # numeric labels "1", "2", "3"
    assert len(task.fewshot_pool) == 1
    assert task.chance == pytest.approx((1 / 4 + 1 / 3) / 2)
    with pytest.raises(ValueError, match="unknown ARC subset"):
        load_arc("ARC-Hard", data_files=files)


def test_mmlu_from_parquet(tmp_path, tokenizer, uniform):
    path = _parquet(tmp_path / "mmlu.parquet", MMLU_ROWS)
    task = load_mmlu("elementary_mathematics", split="test", data_files=path,
                     cache_dir=str(tmp_path / "cache"))
    ex = task.examples[0]
    assert ex.context == "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    assert ex.choices == [" A", " B", " C", " D"] and ex.gold == 1
    assert task.description.startswith("The following are multiple choice questions")
    assert "elementary mathematics" in task.description
    res = evaluate_mc(uniform, tokenizer, task)
    assert res.n == 2 and res.chance == 0.25


def test_hellaswag_from_jsonl(tmp_path):
    path = _jsonl(tmp_path / "hs.jsonl", HELLASWAG_ROWS)
    task = load_hellaswag(split="validation", data_files={"validation": path},
                          cache_dir=str(tmp_path / "cache"))
    ex = task.examples[0]
    assert ex.context.startswith("Removing ice from car: Then, the man writes")
    assert ex.context.endswith("smiles. Then")                  # ctx_b capitalised
    assert ex.choices[1] == " , a person board a ski lift. while two men supporting."
    assert ex.gold == 3
    unlabelled = [dict(HELLASWAG_ROWS[0], label="")]
    with pytest.raises(ValueError, match="unlabelled"):
        load_hellaswag(split="test", data_files=_jsonl(tmp_path / "t.jsonl", unlabelled),
                       cache_dir=str(tmp_path / "cache"))


def test_gsm8k_from_jsonl(tmp_path):
    path = _jsonl(tmp_path / "gsm.jsonl", GSM_ROWS)
    task = load_gsm8k(split="test", data_files=path, fewshot_split=None,
                      cache_dir=str(tmp_path / "cache"))
    assert [e.answer for e in task.examples] == ["72", "1500", "-7"]
    assert all(e.match == "numeric" for e in task.examples)
    bad = _jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no marker, 5"}])
    with pytest.raises(ValueError, match="no '#### <number>' line"):
        load_gsm8k(data_files=bad, cache_dir=str(tmp_path / "cache"))


def test_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown file type"):
        load_gsm8k(data_files=str(tmp_path / "x.txt"))
    with pytest.raises(ValueError, match="not 'test'"):
        load_gsm8k(data_files={"train": str(tmp_path / "x.jsonl")})
    wrong = _jsonl(tmp_path / "wrong.jsonl", [{"prompt": "q"}])
    with pytest.raises(KeyError, match="lack the columns"):
        load_gsm8k(data_files=wrong, cache_dir=str(tmp_path / "cache"))


@pytest.fixture
def small_corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(12):
        lines = [f"Document {i} explains the module number {i} in detail today.",
                 f"The function returns a value when called with {i} arguments here.",
                 "Every object carries a reference count managed by the interpreter.",
                 f"Raises ValueError when the input number {i} is negative or missing."]
        (folder / f"doc{i}.txt").write_text("\n".join(lines))
    return load_corpus(folder, val_fraction=0.5)


def test_offline_pydocs_tasks(small_corpus, tokenizer, uniform):
    cloze = pydocs_cloze(n=10, seed=1, corpus=small_corpus)
    assert len(cloze.examples) == 10
    for ex in cloze.examples:
        assert len(ex.choices) == 4 and len(set(ex.choices)) == 4
        assert all(c.startswith(" ") for c in ex.choices)
        assert not ex.context.endswith(" ")
        doc = next(d for d in small_corpus.val_docs if ex.id.startswith(d.name))
        assert ex.context + ex.choices[ex.gold] in doc.text   # the gold word really follows
    assert pydocs_cloze(n=10, seed=1, corpus=small_corpus).examples[3].id == cloze.examples[3].id
    nxt = pydocs_next_line(n=8, seed=2, corpus=small_corpus)
    for ex in nxt.examples:
        assert ex.context.endswith("\n") and len(ex.choices) == 4
        doc = next(d for d in small_corpus.val_docs if ex.id.startswith(d.name + "#"))
        assert ex.context + ex.choices[ex.gold] in doc.text
    res = evaluate_mc(uniform, tokenizer, nxt)
    assert res.chance == 0.25
