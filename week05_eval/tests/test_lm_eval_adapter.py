"""The lm-eval adapter answers exactly what our harness answers, on a local lm-eval task."""

import math

import pytest
import torch

from week05_eval import MCExample, MCTask, continuation_logprobs, encode_pair, evaluate_mc

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402

from week05_eval.lm_eval_adapter import NanochatLM, write_lm_eval_task  # noqa: E402


def _req(kind, args, i=0):
    return Instance(request_type=kind, doc={}, arguments=args, idx=i)


def _task():
    ex = []
    qs = ["What is the capital of France?", "What colour is the sky?", "What does add return?",
          "Which animal is quick?", "What number is the answer?", "Who is lazy?"]
    opts = [" Paris", " blue", " a + b", " the fox", " 42", " the dog"]
    for i, q in enumerate(qs):
        choices = [opts[(i + j) % len(opts)] for j in range(3)]
        ex.append(MCExample(f"Question: {q}\nAnswer:", choices, gold=(2 * i) % 3, id=str(i)))
    return MCTask("local_qa", ex)


def test_loglikelihood_identical_to_harness(tokenizer, tiny_llama):
    lm = NanochatLM(tiny_llama, tokenizer, batch_size=4)
    pairs = [("Question: What is the capital of France?\nAnswer:", " Paris"),
             ("Answer: ", "blue"), ("", "hello world"), ("x" * 200, " tail")]   # long: truncated
    got = lm.loglikelihood([_req("loglikelihood", p, i) for i, p in enumerate(pairs)])
    ours = continuation_logprobs(tiny_llama, [encode_pair(tokenizer, c, x) for c, x in pairs],
                                 batch_size=4)
    assert [g for g in got] == [(lp, greedy) for lp, greedy, _ in ours]   # bit-identical
    assert all(lp < 0 for lp, _ in got)


def test_loglikelihood_rolling_uses_lm_evals_windows(tokenizer, tiny_llama):
    """Reference: lm-eval's own window maker (get_rolling_token_windows + make_disjoint_window,
    what its Hugging Face model uses), each window through a plain forward pass. The same
    tokens meet the same context; only batch shapes differ, so fp32 noise: 1e-3 on a sum of
    ~150 terms of size ~5."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    text = "The quick brown fox jumps over the lazy dog. " * 6      # longer than block_size 64
    lm = NanochatLM(tiny_llama, tokenizer)
    (got,) = lm.loglikelihood_rolling([_req("loglikelihood_rolling", (text,))])
    ids = tokenizer.encode(text)
    assert len(ids) > 64
    ref = 0.0
    windows = get_rolling_token_windows(ids, tokenizer.bos_id, max_seq_len=64, context_len=1)
    with torch.no_grad():
        for ctx, cont in map(make_disjoint_window, windows):
            inp = (ctx + cont)[:-1]
            logp = torch.log_softmax(tiny_llama(torch.tensor([inp]))[0], -1)      # (T, V)
            rows = logp[len(inp) - len(cont):]
            ref += rows.gather(1, torch.tensor(cont)[:, None]).sum().item()
    assert got == pytest.approx(ref, abs=1e-3)


def test_generate_until_stops(tokenizer, oracle_cls):
    prompt = "Question: 6 * 7?\nAnswer:"
    ids = [tokenizer.bos_id] + tokenizer.encode(prompt)
    oracle = oracle_cls([ids + tokenizer.encode(" 42\n\nQuestion: next")], tokenizer.vocab_size)
    lm = NanochatLM(oracle, tokenizer)
    (out,) = lm.generate_until([_req("generate_until", (prompt, {"until": ["\n\n"],
                                                                 "max_gen_toks": 20}))])
    assert out == " 42"


def test_simple_evaluate_on_a_local_task(tmp_path, tokenizer, tiny_llama):
    """lm-eval loads a JSON-lines task from a local YAML, calls our adapter, and reports the
    same acc / acc_norm as evaluate_mc; its per-choice log-likelihoods equal ours."""
    from lm_eval.tasks import TaskManager
    task = _task()
    name = write_lm_eval_task(task, tmp_path / "tasks")
    lm = NanochatLM(tiny_llama, tokenizer, batch_size=8)
    out = lm_eval.simple_evaluate(model=lm, tasks=[name], num_fewshot=0, log_samples=True,
                                  task_manager=TaskManager(include_path=str(tmp_path / "tasks"),
                                                           include_defaults=False),
                                  bootstrap_iters=0)
    metrics = out["results"][name]
    ours = evaluate_mc(tiny_llama, tokenizer, task)
    assert metrics["acc,none"] == pytest.approx(ours.acc)
    assert metrics["acc_norm,none"] == pytest.approx(ours.acc_norm)
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    for s, scores in zip(samples, ours.scores):
        theirs = [r[0] for r in s["filtered_resps"]]
        theirs = [float(t[0]) if isinstance(t, (list, tuple)) else float(t) for t in theirs]
        # lm-eval hands the requests over in its own order, so the batches (and their padded
        # shapes) differ from ours and fp32 reductions differ in the last bits: ~1e-7 relative
        assert theirs == pytest.approx(scores, rel=1e-6)
        assert all(math.isfinite(t) for t in theirs)
