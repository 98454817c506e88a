"""Answer extraction edge cases and the generative harness on models with known outputs."""

import pytest

from week05_eval import (
    GenExample,
    GenTask,
    evaluate_generative,
    exact_match,
    extract_gsm8k_answer,
    extract_number,
    numeric_match,
)
from week05_eval.generative import chat_prompt_ids, completion_prompt
from week05_eval.scoring import bos_of, greedy_generate

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.mark.parametrize("text, want", [
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("so the total is\n#### 1,234", "1234"),
    ("#### -5", "-5"),
    ("####  $18.00", "18"),
    ("#### 0.5", "0.5"),
    ("he paid #### 3.", "3"),
])
def test_gsm8k_marker(text, want):
    assert extract_gsm8k_answer(text) == want


def test_gsm8k_missing_marker_is_none():
    assert extract_gsm8k_answer("The answer is 72") is None


@pytest.mark.parametrize("text, want", [
    ("The answer is 72", "72"),                 # no ####: the last number
    ("She has 1,234,567 apples", "1234567"),    # thousands separators
    ("It fell to -7 degrees", "-7"),            # a negative number
    ("5-3 = 2", "2"),                           # '-' between digits is not a sign
    ("from 5 to -3", "-3"),
    ("costs $4.50.", "4.5"),                    # dollar sign, trailing period
    ("7.0", "7"),                               # 7.0 == 7
    ("lists 1,2,3", "3"),                       # not a thousands group
    ("x3 and v2", None),                        # digits inside words are not numbers
    ("no digits here", None),
    ("first 3 then #### 9 then 4", "9"),        # #### wins over the last number
])
def test_extract_number(text, want):
    assert extract_number(text) == want


def test_matches():
    assert numeric_match("so it is 1,000.", "1000")
    assert numeric_match("#### -12", "-12")
    assert not numeric_match("12", "-12")
    assert not numeric_match("no number", "3")
    assert exact_match("  Paris\n", "Paris")
    assert not exact_match("paris", "Paris")


def _oracle_for(tokenizer, oracle_cls, prompt_ids, answer_text, end_ids):
    return oracle_cls([prompt_ids + tokenizer.encode(answer_text) + end_ids], tokenizer.vocab_size)


def test_completion_style_with_an_oracle(tokenizer, oracle_cls):
    """The oracle continues the prompt with ' 42' and a newline: the harness stops at the
    newline and scores a numeric match; a wrong reference scores 0."""
    ex = GenExample("What is 6 * 7?", "42", match="numeric")
    ids = bos_of(tokenizer) + tokenizer.encode(completion_prompt(ex))
    model = _oracle_for(tokenizer, oracle_cls, ids, " 42\nQuestion:", [])
    res = evaluate_generative(model, tokenizer, GenTask("t", [ex]), max_new_tokens=12)
    assert res.accuracy == 1.0 and res.predictions == [" 42"]
    wrong = GenExample("What is 6 * 7?", "43", match="numeric")
    assert evaluate_generative(model, tokenizer, GenTask("t", [wrong])).accuracy == 0.0


def test_chat_style_stops_at_assistant_end(tokenizer, oracle_cls):
    ex = GenExample("Capital of France?", "Paris")
    ids = chat_prompt_ids(tokenizer, ex.question)
    end = tokenizer.special_tokens["<|assistant_end|>"]
    model = _oracle_for(tokenizer, oracle_cls, ids, "Paris", [end, end])
    res = evaluate_generative(model, tokenizer, GenTask("t", [ex]), style="chat")
    assert res.predictions == ["Paris"] and res.accuracy == 1.0


def test_fewshot_completion_prompt():
    shots = [GenExample("1+1?", "2"), GenExample("2+2?", "4")]
    p = completion_prompt(GenExample("3+3?", "6"), shots)
    assert p == "Question: 1+1?\nAnswer: 2\n\nQuestion: 2+2?\nAnswer: 4\n\nQuestion: 3+3?\nAnswer:"


def test_sampling_is_seeded(tokenizer, tiny_llama):
    import torch
    ids = bos_of(tokenizer) + tokenizer.encode("hello")
    a = greedy_generate(tiny_llama, tokenizer, ids, 8, temperature=1.0,
                        generator=torch.Generator().manual_seed(3))
    b = greedy_generate(tiny_llama, tokenizer, ids, 8, temperature=1.0,
                        generator=torch.Generator().manual_seed(3))
    assert a == b


def test_bad_arguments(tokenizer, uniform):
    task = GenTask("t", [GenExample("q", "a")])
    with pytest.raises(ValueError, match="style"):
        evaluate_generative(uniform, tokenizer, task, style="poem")
    with pytest.raises(ValueError, match="tool use needs style='chat'"):
        evaluate_generative(uniform, tokenizer, task, tools={"calculator": object()})
    with pytest.raises(ValueError, match="match must be"):
        GenExample("q", "a", match="fuzzy")


@pytest.mark.parametrize("temperature, top_k", [(0.0, None), (1.0, None), (0.8, 5)])
def test_cached_decoding_gives_the_same_ids_as_recomputing(tokenizer, tiny_llama, temperature,
                                                            top_k):
    """A model with week04's KV cache decodes one token per step; the ids (greedy, and sampled
    from the same seed) equal those of the loop that re-runs the whole context."""
    import torch

    from week05_eval.scoring import greedy_ids, has_kv_cache
    assert has_kv_cache(tiny_llama)
    ids = bos_of(tokenizer) + tokenizer.encode("def f(x):")
    runs = [greedy_ids(tiny_llama, ids, 20, temperature=temperature, top_k=top_k,
                       generator=torch.Generator().manual_seed(7), use_cache=use_cache)
            for use_cache in (True, False)]
    assert len(runs[0]) == 20 and runs[0] == runs[1]
    # past block_size (64) both slide a window instead
    long = greedy_ids(tiny_llama, ids, 70, use_cache=True)
    assert long == greedy_ids(tiny_llama, ids, 70, use_cache=False)
