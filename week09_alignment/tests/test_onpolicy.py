"""On-policy preference pairs (``week09_alignment.onpolicy``), Stretch tier.

``run_to_message`` is checked on scripted week04 ``ToolRun``s (a reply with a
calculator call and its output, an unfinished call, an empty reply): the parts
come out in order and, where the tokens are the tokenizer's own encoding of
their text, week04's ``render_conversation`` of prompt + message gives back
exactly the prompt's ids followed by the run's ids. ``on_policy_pairs`` runs
with week04's ``generate_with_tools`` replaced by a script of replies per
prompt, so each of its three cases (a sampled correct reply vs a wrong one,
the reference reply vs a wrong one, all correct: no pair) and its counts are
known; a last test runs the real generation on a tiny random model.
"""

from __future__ import annotations

import pytest
import torch

from week04_modern_arch_tools import (
    Llama,
    LlamaConfig,
    render_conversation,
    render_for_completion,
)
from week04_modern_arch_tools.chat import ToolRun, special_ids
from week09_alignment import onpolicy
from week09_alignment.dpo import encode_pair
from week09_alignment.onpolicy import on_policy_pairs, run_to_message

pytestmark = pytest.mark.stretch


@pytest.fixture(scope="module")
def tok(arith_tok):
    return arith_tok


def _user(text):
    return [{"role": "user", "content": text}]


def _run(tok, pieces, prompt=None):
    """A ToolRun whose ids are ``pieces``: strings (encoded by ``tok``) and special-token names."""
    sp = special_ids(tok)
    ids = []
    for p in pieces:
        ids += [sp[p]] if p in sp else tok.encode(p)
    return ToolRun(prompt=prompt or [], ids=ids, finished=sp["<|assistant_end|>"] in ids)


# ---------------------------------------------------------------- run_to_message


def test_run_with_a_call_round_trips_through_render_conversation(tok):
    prompt = _user("What is 12 + 30?")
    run = _run(tok, ["Let me compute.", "<|python_start|>", "calculator: 12+30", "<|python_end|>",
                     "<|output_start|>", "42", "<|output_end|>", "The answer is 42.",
                     "<|assistant_end|>"])
    msg = run_to_message(run, tok)
    assert msg == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me compute."},
        {"type": "python", "text": "calculator: 12+30"},
        {"type": "output", "text": "42"},
        {"type": "text", "text": "The answer is 42."}]}
    ids, mask = render_conversation(prompt + [msg], tok)
    n = len(render_for_completion(prompt, tok))
    assert ids == render_for_completion(prompt, tok) + run.ids
    sp = special_ids(tok)
    o0, o1 = ids.index(sp["<|output_start|>"]), ids.index(sp["<|output_end|>"])
    assert all(mask[n:o0]) and not any(mask[o0:o1 + 1]) and all(mask[o1 + 1:])


def test_call_first_then_text_round_trips(tok):
    prompt = _user("What is 7 * 6?")
    run = _run(tok, ["<|python_start|>", "calculator: 7*6", "<|python_end|>", "<|output_start|>",
                     "42", "<|output_end|>", "42", "<|assistant_end|>"])
    msg = run_to_message(run, tok)
    assert [p["type"] for p in msg["content"]] == ["python", "output", "text"]
    assert render_conversation(prompt + [msg], tok)[0] == render_for_completion(prompt, tok) + run.ids


def test_unfinished_call_and_unfinished_text(tok):
    """Out of tokens inside a call: the call's text so far is its last part (re-rendering
    closes it with <|python_end|> and <|assistant_end|>, tokens the model never wrote)."""
    run = _run(tok, ["Let me see.", "<|python_start|>", "calculator: 12+"])
    assert not run.finished
    msg = run_to_message(run, tok)
    assert msg["content"] == [{"type": "text", "text": "Let me see."},
                              {"type": "python", "text": "calculator: 12+"}]
    sp = special_ids(tok)
    ids, _ = render_conversation(_user("q") + [msg], tok)
    assert ids[-len(run.ids) - 2:] == run.ids + [sp["<|python_end|>"], sp["<|assistant_end|>"]]
    text_only = run_to_message(_run(tok, ["The answer"]), tok)
    assert text_only["content"] == [{"type": "text", "text": "The answer"}]
    # everything after <|assistant_end|> is dropped
    after_end = run_to_message(_run(tok, ["5", "<|assistant_end|>", "junk"]), tok)
    assert after_end["content"] == [{"type": "text", "text": "5"}]


def test_empty_reply_is_one_empty_text_part(tok):
    prompt = _user("What is 1 + 1?")
    for pieces in (["<|assistant_end|>"], []):
        msg = run_to_message(_run(tok, pieces), tok)
        assert msg == {"role": "assistant", "content": [{"type": "text", "text": ""}]}
    ids, mask = render_conversation(prompt + [msg], tok)
    assert ids == render_for_completion(prompt, tok) + [special_ids(tok)["<|assistant_end|>"]]
    assert mask[-1] == 1


# ---------------------------------------------------------------- on_policy_pairs


def _example(q, answer):
    return {"prompt": _user(q), "answer": answer, "kind": "arithmetic",
            "chosen": [{"role": "assistant", "content": f"The answer is {answer}."}],
            "rejected": [{"role": "assistant", "content": "The answer is 0."}]}


EXAMPLES = [_example("What is 2 + 2?", "4"), _example("What is 3 * 3?", "9"),
            _example("What is 10 - 3?", "7")]
SCRIPT = {"What is 2 + 2?": ["4", "5", "4", "6"],    # sampled correct vs wrong
          "What is 3 * 3?": ["8", "10", "6", "1"],   # no sample right: reference vs wrong
          "What is 10 - 3?": ["7", "7", "7", "7"]}   # all correct: no pair


@pytest.fixture
def scripted(monkeypatch, tok):
    """generate_with_tools replaced: each prompt's k-th copy in a call gets SCRIPT[q][k]."""
    calls = []

    def fake(model, tokenizer, prompts, tools, max_new_tokens, temperature, seed, **kw):
        calls.append({"n": len(prompts), "temperature": temperature, "seed": seed,
                      "max_new_tokens": max_new_tokens, "training": model.training})
        seen, runs = {}, []
        for p in prompts:
            q = p[0]["content"]
            k = seen[q] = seen.get(q, -1) + 1
            runs.append(_run(tok, [f"The answer is {SCRIPT[q][k]}.", "<|assistant_end|>"]))
        return runs

    monkeypatch.setattr(onpolicy, "generate_with_tools", fake)
    return calls


def test_three_cases_and_counts(tok, scripted):
    model = torch.nn.Linear(2, 2).train()
    pairs, counts = on_policy_pairs(model, tok, EXAMPLES, tools={}, samples=4, batch_size=8,
                                    max_new_tokens=17, seed=5)
    assert counts == {"sampled_correct_vs_wrong": 1, "reference_vs_wrong": 1, "all_correct": 1,
                      "sample_accuracy": (2 + 0 + 4) / 12}
    assert len(pairs) == 2
    a, b = pairs
    def reply(text):
        return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]

    assert a["chosen"] == reply("The answer is 4.") and a["rejected"] == reply("The answer is 5.")
    assert b["chosen"] == EXAMPLES[1]["chosen"]  # the reference reply, correct by construction
    assert b["rejected"] == reply("The answer is 8.")
    assert [p["source"] for p in pairs] == ["sampled_correct_vs_wrong", "reference_vs_wrong"]
    for p, ex in zip(pairs, EXAMPLES):
        assert p["prompt"] == ex["prompt"] and p["answer"] == ex["answer"]
        assert p["kind"] == "arithmetic/on-policy"
        encode_pair(p, tok, 96)  # DPO can train on it
    # batch_size 8 // 4 samples = 2 prompts per generation call, sampled in eval mode at T = 1
    assert [c["n"] for c in scripted] == [8, 4]
    assert [c["seed"] for c in scripted] == [5, 7]
    assert all(c["temperature"] == 1.0 and c["max_new_tokens"] == 17 and not c["training"]
               for c in scripted)
    assert model.training  # the mode is put back


def test_fewer_than_two_samples_refused(tok, scripted):
    with pytest.raises(ValueError, match="samples"):
        on_policy_pairs(torch.nn.Linear(2, 2), tok, EXAMPLES, tools={}, samples=1)
    assert not scripted


def test_real_generation_on_a_tiny_model(tok):
    """week04's own generate_with_tools: an untrained model gets every answer wrong, so each
    prompt pairs the reference reply with its first sample, and DPO can encode every pair."""
    from week05_eval.report import default_tools

    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_kv_head=2,
                              n_embd=16, block_size=96))
    examples = [_example("What is 12 + 30?", "42"), _example("What is 5 * 11?", "55")]
    pairs, counts = on_policy_pairs(model, tok, examples, default_tools(0), samples=2,
                                    max_new_tokens=6)
    assert counts["reference_vs_wrong"] == len(pairs) == 2
    assert counts["sample_accuracy"] == 0.0
    for p, ex in zip(pairs, examples):
        assert p["chosen"] == ex["chosen"] and p["rejected"][0]["role"] == "assistant"
        encode_pair(p, tok, 96)
