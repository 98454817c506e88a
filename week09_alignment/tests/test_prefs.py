"""Preference pairs: held-out splits, a verifier that tells chosen from rejected, rendering,
determinism, and UltraFeedback's real schema read from local files.

The references: week04's ``split_of`` (the split rule), week04's ``Calculator`` and
``make_world`` (the true answers), week04's ``render_conversation`` (the format) and
``datasets`` reading parquet/jsonl files written in UltraFeedback's schema.
"""

import json
import re

import pytest

from week04_modern_arch_tools import (
    Calculator,
    fit_tokenizer,
    make_tool_dataset,
    render_conversation,
)
from week04_modern_arch_tools.tooldata import ATTRIBUTES, make_world, split_of
from week09_alignment.prefs import (
    KINDS,
    is_correct,
    load_ultrafeedback,
    preference_pairs,
    reply_text,
)

WORLD = make_world(0)


def problem_key(pair: dict) -> str:
    """week04's key of the pair's problem, read from the question (the test's own parse)."""
    q = pair["prompt"][0]["content"]
    country = [c for c in WORLD if re.search(rf"\b{c['name']}\b", q)]
    if country:
        attr = next(a for a in ATTRIBUTES if a in q.lower())
        return f"facts:{country[0]['name']}/{attr}"
    call = pair["chosen"][0]["content"][0]["text"]
    assert call.startswith("calculator: ")
    return f"arithmetic:{call.removeprefix('calculator: ')}"


@pytest.mark.stretch
def test_splits_follow_split_of_and_are_disjoint():
    keys = {}
    for split in ("train", "test"):
        pairs = preference_pairs(300, seed=0, split=split)
        keys[split] = {problem_key(p) for p in pairs}
        assert all(split_of(k) == split for k in keys[split])
    assert keys["train"] and keys["test"] and not keys["train"] & keys["test"]


@pytest.mark.stretch
@pytest.mark.parametrize("split", ["train", "test"])
def test_chosen_is_correct_and_rejected_is_not(split):
    pairs = preference_pairs(300, seed=1, split=split)
    assert {p["kind"] for p in pairs} == set(KINDS)
    for p in pairs:
        assert is_correct(p, p["chosen"][0]), p
        assert not is_correct(p, p["rejected"][0]), p
        # the same verdict on the plain text a generation's ToolRun.answer gives
        assert is_correct(p, reply_text(p["chosen"][0]))


@pytest.mark.stretch
def test_answers_are_the_real_tools_and_worlds():
    """tool answers are what week04's Calculator prints; fact answers are the world's values;
    both rejected forms (with and without the tool call) occur."""
    pairs = preference_pairs(120, seed=0)
    calc, world = Calculator(), {c["name"]: c for c in WORLD}
    forms = {"tool": set(), "fact": set()}
    for p in pairs:
        key = problem_key(p)
        if key.startswith("arithmetic:"):
            assert p["answer"] == calc.run(key.removeprefix("arithmetic:"))
        else:
            name, attr = key.removeprefix("facts:").split("/")
            assert p["answer"] == str(world[name][attr])
        if p["kind"] in forms:
            forms[p["kind"]].add(isinstance(p["rejected"][0]["content"], list))
    assert forms == {"tool": {True, False}, "fact": {True, False}}


@pytest.mark.stretch
def test_verifier_numbers_and_contradictions():
    num = {"answer": "1776"}
    assert is_correct(num, "37 * 48 = 1,776.") and is_correct(num, "It is 1776.0")
    assert not is_correct(num, "1776? No: 1777.") and not is_correct(num, "no number")
    word = {"answer": "Savek", "contradicts": ["Quithaton", "Brekaton"]}
    assert is_correct(word, "The capital is savek.")
    assert not is_correct(word, "Savekton")                    # not a whole word
    assert not is_correct(word, "Savek or Quithaton, I think")  # states a contradicting value
    with pytest.raises(ValueError, match="no checkable answer"):
        is_correct({"answer": ""}, "x")


@pytest.mark.stretch
def test_pairs_render_with_week04():
    convs = make_tool_dataset("arithmetic", 50, seed=0) + make_tool_dataset("facts", 50, seed=0)
    tok = fit_tokenizer(convs, vocab_size=300)
    for p in preference_pairs(60, seed=0):
        n_prompt = len(render_conversation(p["prompt"] + [{"role": "assistant", "content": ""}],
                                           tok)[0]) - 1  # up to and including assistant_start
        for side in ("chosen", "rejected"):
            ids, mask = render_conversation(p["prompt"] + p[side], tok)
            assert len(ids) == len(mask) and sum(mask) > 0
            assert not any(mask[:n_prompt])


@pytest.mark.stretch
def test_deterministic_per_seed():
    a, b = preference_pairs(60, seed=3), preference_pairs(60, seed=3)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(preference_pairs(60, seed=4))
    assert len(preference_pairs(7, kinds=("tool",))) == 7


@pytest.mark.stretch
def test_bad_arguments_say_what_is_valid():
    with pytest.raises(ValueError, match="valid: train, test"):
        preference_pairs(3, split="dev")
    with pytest.raises(ValueError, match="valid: tool, fact, ramble"):
        preference_pairs(3, kinds=("poetry",))
    with pytest.raises(ValueError, match="non-negative"):
        preference_pairs(-1)


# ---------------------------------------------------------------- UltraFeedback


def uf_row(i: int, prompt: str, good: str, bad: str, sc=8.5, sr=3.0) -> dict:
    """One row in ``HuggingFaceH4/ultrafeedback_binarized``'s schema."""
    user = {"role": "user", "content": prompt}
    return {"prompt": prompt, "prompt_id": f"{i:064x}",
            "chosen": [user, {"role": "assistant", "content": good}],
            "rejected": [user, {"role": "assistant", "content": bad}],
            "messages": [user, {"role": "assistant", "content": good}],
            "score_chosen": sc, "score_rejected": sr}


ROWS = [uf_row(0, "Name a prime.", "7 is prime.", "8 is prime.", 9.0, 2.0),
        uf_row(1, "Say hi in French.", "Bonjour!", "Hola!", 7.5, 7.5),
        uf_row(2, "Capital of France?", "Paris.", "Lyon.", 10.0, 1.0)]


def write(rows, path):
    import datasets
    ds = datasets.Dataset.from_list(rows)
    if str(path).endswith(".parquet"):
        ds.to_parquet(str(path))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.core
@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_ultrafeedback_local_file_round_trip(tmp_path, suffix):
    f = write(ROWS, tmp_path / f"train_prefs{suffix}")
    pairs = load_ultrafeedback("train_prefs", data_files=f, cache_dir=str(tmp_path / "c"))
    assert len(pairs) == len(ROWS)
    for p, r in zip(pairs, ROWS):
        assert p["prompt"] == r["chosen"][:-1]
        assert p["chosen"] == r["chosen"][-1:] and p["rejected"] == r["rejected"][-1:]
        assert (p["score_chosen"], p["score_rejected"]) == (r["score_chosen"], r["score_rejected"])
        assert p["kind"] == "ultrafeedback" and p["answer"] == "" and p["prompt_id"] == r["prompt_id"]
    assert len(load_ultrafeedback("train_prefs", data_files=f, limit=2,
                                  cache_dir=str(tmp_path / "c"))) == 2


@pytest.mark.core
def test_ultrafeedback_bad_rows_error_or_skip(tmp_path):
    broken = uf_row(3, "Two users?", "a", "b")
    broken["chosen"] = [broken["chosen"][0], broken["chosen"][0]]  # user, user: no assistant
    f = write(ROWS[:1] + [broken] + ROWS[1:], tmp_path / "test_prefs.jsonl")
    with pytest.raises(ValueError, match="row 1: 'chosen': roles"):
        load_ultrafeedback("test_prefs", data_files=f, on_bad="error",
                           cache_dir=str(tmp_path / "c"))
    with pytest.warns(UserWarning, match="skipped 1 broken rows"):
        pairs = load_ultrafeedback("test_prefs", data_files=f, cache_dir=str(tmp_path / "c"))
    assert [p["prompt"][0]["content"] for p in pairs] == [r["prompt"] for r in ROWS]
    with pytest.raises(ValueError, match="unknown UltraFeedback split"):
        load_ultrafeedback("train")
