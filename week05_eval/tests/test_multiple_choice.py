"""Multiple-choice harness: oracle 100%, uniform = chance, centring, few-shot prompts."""

import pytest
import torch

from week05_eval import (
    MCExample,
    MCTask,
    build_prompt,
    centered_accuracy,
    continuation_logprobs,
    core_score,
    encode_pair,
    evaluate_mc,
)
from week05_eval.multiple_choice import MCResult, fewshot_examples

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _task(n=8, k=4):
    words = [" Paris", " blue", " dog", " quick brown", " 42", " lazy", " return a + b", " fox"]
    ex = []
    for i in range(n):
        choices = [words[(i + j) % len(words)] for j in range(k)]
        ex.append(MCExample(f"Question: item {i}?\nAnswer:", choices, gold=i % k, id=str(i)))
    return MCTask("toy", ex)


def test_oracle_gets_everything_right(tokenizer, oracle_cls):
    task = _task()
    gold_seqs = []
    for ex in task.examples:
        ctx, cont = encode_pair(tokenizer, ex.context, ex.choices[ex.gold])
        gold_seqs.append(ctx + cont)
    oracle = oracle_cls(gold_seqs, tokenizer.vocab_size)
    res = evaluate_mc(oracle, tokenizer, task, batch_size=3)
    assert res.acc == res.acc_norm == res.acc_token == 1.0
    assert res.centered == 1.0
    assert res.predictions == [ex.gold for ex in task.examples]


def test_uniform_model_scores_chance(tokenizer, uniform):
    """Choices of equal length in tokens and characters ( A.. D) with the gold cycling over
    positions: a uniform model ties everywhere, picks the first, and is right 1 time in 4."""
    letters = [" A", " B", " C", " D"]
    assert len({len(encode_pair(tokenizer, "Answer:", c)[1]) for c in letters}) == 1
    ex = [MCExample(f"Q{i}\nAnswer:", letters, gold=i % 4) for i in range(12)]
    res = evaluate_mc(uniform, tokenizer, MCTask("letters", ex))
    assert res.chance == pytest.approx(0.25)
    assert res.acc_norm == pytest.approx(0.25)
    assert res.centered == pytest.approx(0.0)


def test_length_bias_of_the_raw_sum(tokenizer, uniform):
    """Under a uniform model each token costs ln V, so the raw sum always prefers the choice
    with fewer tokens: that is the length bias acc_norm exists for."""
    ex = MCExample("Pick:", [" quick brown fox jumps", " dog"], gold=1)
    res = evaluate_mc(uniform, tokenizer, MCTask("bias", [ex]))
    assert res.acc == 1.0
    assert res.scores[0][0] < res.scores[0][1]


def _uniform_picks(tokenizer, examples):
    """Under a uniform model every token costs ln V, so choice j scores -n_j ln V (n_j its
    tokens in context): acc picks the fewest tokens, acc_token ties everywhere, acc_norm picks
    the most characters per token. Returns (tokens, characters) per choice, to check that the
    tokenizer still cuts the choices the way the expected picks were derived from."""
    return [[(len(encode_pair(tokenizer, ex.context, c)[1]), len(c)) for c in ex.choices]
            for ex in examples]


def test_acc_norm_divides_by_characters_not_tokens_or_bytes(tokenizer, uniform):
    """lm-eval's acc_norm is argmax of s_j / len(choice_j) in characters (``len(str)``, the
    leading space included), not per token nor per UTF-8 byte. With a uniform model (L = ln V):

    - `` zq`` 3 tokens / 3 chars, `` Question`` 2 / 9, `` the`` 1 / 4: per char
      -L, -2L/9, -L/4 -> 1; the raw sum -> 2 (fewest tokens); per token a tie -> 0;
    - `` zq`` 3 / 3, `` quickz`` 6 / 7, `` café`` 5 tokens / 5 chars / 6 bytes: per char
      -L, -6L/7, -L -> 1; per byte -L, -6L/7, -5L/6 -> 2; the raw sum -> 0; per token -> 0.

    Gold is 1 in both, so acc_norm is 1 and acc, acc_token 0; a per-token acc_norm (whatever
    its tie-break) or a per-byte one gets an example wrong."""
    ex = [MCExample("Q0\nAnswer:", [" zq", " Question", " the"], gold=1),
          MCExample("Q1\nAnswer:", [" zq", " quickz", " caf\u00e9"], gold=1)]
    assert _uniform_picks(tokenizer, ex) == [[(3, 3), (2, 9), (1, 4)], [(3, 3), (6, 7), (5, 5)]]
    res = evaluate_mc(uniform, tokenizer, MCTask("per_char", ex))
    assert res.predictions == [1, 1]
    assert (res.acc, res.acc_norm, res.acc_token) == (0.0, 1.0, 0.0)


def test_ties_go_to_the_first_choice(tokenizer, uniform):
    """Exact ties (a uniform model, choices of equal tokens and characters) go to the FIRST
    tied choice, as lm-eval's np.argmax does, for all three metrics:

    - `` A``, `` B``, `` C``: 2 tokens / 2 chars each, a three-way tie everywhere -> 0 (gold);
    - `` zq`` 3 / 3, then `` qz``, `` ab``, `` ba`` 2 / 3 each: the raw sum (-3L, -2L x3) and
      per char (-L, -2L/3 x3) tie on 1, 2, 3 -> 1 (gold); per token all tie -> 0.

    A last-wins tie-break picks 2 and 3; acc = acc_norm = 1 and acc_token = 1/2 only with
    first-wins. (Sums of at most 3 equal log-probs are exact in any order, so the ties are.)"""
    ex = [MCExample("Q0\nAnswer:", [" A", " B", " C"], gold=0),
          MCExample("Q1\nAnswer:", [" zq", " qz", " ab", " ba"], gold=1)]
    assert _uniform_picks(tokenizer, ex) == [[(2, 2)] * 3, [(3, 3), (2, 3), (2, 3), (2, 3)]]
    res = evaluate_mc(uniform, tokenizer, MCTask("ties", ex))
    assert res.scores[0][0] == res.scores[0][1] == res.scores[0][2]
    assert res.scores[1][1] == res.scores[1][2] == res.scores[1][3]
    assert res.predictions == [0, 1]
    assert (res.acc, res.acc_norm, res.acc_token) == (1.0, 1.0, 0.5)


def test_centering_and_core():
    assert centered_accuracy(0.25, 0.25) == 0.0
    assert centered_accuracy(1.0, 0.25) == 1.0
    assert centered_accuracy(0.625, 0.25) == pytest.approx(0.5)
    assert centered_accuracy(0.0, 0.5) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        centered_accuracy(0.5, 1.0)
    a = MCResult("a", 10, 0.5, 0.5, 0.5, 0.25, 0)       # centred 1/3
    b = MCResult("b", 10, 1.0, 1.0, 1.0, 0.5, 0)        # centred 1
    assert core_score([a, b]) == pytest.approx((1 / 3 + 1) / 2)


def test_fewshot_prompt_construction():
    pool = [MCExample(f"Q: {i}\nA:", [" yes", " no"], gold=i % 2, id=f"p{i}") for i in range(5)]
    ex = pool[2]
    shots = fewshot_examples(pool, 2, seed=7, exclude=ex)
    assert len(shots) == 2 and ex not in shots
    assert shots == fewshot_examples(pool, 2, seed=7, exclude=ex)    # reproducible
    prompt = build_prompt(ex, shots, description="Answer yes or no.\n\n", separator="\n\n")
    expected = ("Answer yes or no.\n\n" + shots[0].context + shots[0].choices[shots[0].gold]
                + "\n\n" + shots[1].context + shots[1].choices[shots[1].gold] + "\n\n" + ex.context)
    assert prompt == expected
    with pytest.raises(ValueError, match="pool has only 4"):
        fewshot_examples(pool, 5, seed=0, exclude=ex)


def test_fewshot_changes_the_prompt_scored(tokenizer, tiny_llama):
    pool = [MCExample(f"Q: {i}\nA:", [" yes", " no"], gold=i % 2, id=f"p{i}") for i in range(6)]
    task = MCTask("yn", pool[:3], fewshot_pool=pool[3:])
    zero = evaluate_mc(tiny_llama, tokenizer, task, num_fewshot=0)
    two = evaluate_mc(tiny_llama, tokenizer, task, num_fewshot=2)
    assert zero.num_fewshot == 0 and two.num_fewshot == 2
    assert zero.scores != two.scores


def test_batched_scores_equal_one_at_a_time(tokenizer, tiny_llama):
    """Right padding must not leak into scored positions (causal model); fp32 noise only."""
    reqs = [encode_pair(tokenizer, "Question: What is the capital of France?\nAnswer:", c)
            for c in (" Paris", " blue sky", " 42")]
    reqs.append(([tokenizer.bos_id], tokenizer.encode("hello")))
    together = continuation_logprobs(tiny_llama, reqs, batch_size=4)
    alone = [continuation_logprobs(tiny_llama, [r], batch_size=1)[0] for r in reqs]
    for (a, ga, na), (b, gb, nb) in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-4) and ga == gb and na == nb
    # and against a direct log-softmax on the unpadded sequence
    ctx, cont = reqs[0]
    with torch.no_grad():
        logp = torch.log_softmax(tiny_llama(torch.tensor([ctx + cont])[:, :-1])[0], -1)
    direct = sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont))
    assert together[0][0] == pytest.approx(direct, abs=1e-4)


def test_encode_pair_moves_trailing_space(tokenizer):
    ctx1, cont1 = encode_pair(tokenizer, "Answer: ", "Paris")
    ctx2, cont2 = encode_pair(tokenizer, "Answer:", " Paris")
    assert (ctx1, cont1) == (ctx2, cont2)
    assert ctx1[0] == tokenizer.bos_id
    assert tokenizer.decode(cont1) == " Paris"


def test_bad_examples_are_rejected():
    with pytest.raises(ValueError, match="at least 2 choices"):
        MCExample("q", [" a"], 0)
    with pytest.raises(ValueError, match="gold 3"):
        MCExample("q", [" a", " b"], 3)
