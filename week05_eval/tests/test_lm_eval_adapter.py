"""The lm-eval adapter against lm-eval's own Hugging Face model (``HFLM``).

The reference is ``lm_eval.models.huggingface.HFLM`` running ``Llama.to_hf()``
of the very same weights with a Hugging Face tokenizer that produces our ids:
transformers' own tiktoken converter (``TikTokenConverter``, the one it uses
for Llama 3's tokenizer) fed our byte-level ranks, pattern and specials, and a
post-processor that opens every encoding with ``<|bos|>`` as our harness does.
So lm-eval does its own request encoding (``_encode_pair``, BOS handling, the
empty-context prefix, left truncation to ``max_length``) and its own scoring
(``_loglikelihood_tokens``); we only compare the answers.
"""

import pytest
import torch

from week05_eval import MCExample, MCTask, evaluate_mc

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402

from week05_eval.lm_eval_adapter import NanochatLM, write_lm_eval_task  # noqa: E402

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")


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


# --------------------------------------------------------------------------- the reference


def hf_tokenizer(tok):
    """A ``PreTrainedTokenizerFast`` with our merges, split pattern and special-token ids."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class OurRanks(TikTokenConverter):
        """transformers' tiktoken converter, reading our ranks instead of a tiktoken file."""

        def __init__(self):
            super().__init__(pattern=tok.pattern, extra_special_tokens=list(tok.special_tokens))

        def load_tiktoken_bpe(self, _url):
            return {b: i for i, b in enumerate(tok.vocab)}

    core = OurRanks().converted()
    core.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", special_tokens=[("<|bos|>", tok.bos_id)])
    # pad_token set so that HFLM does not add a token of its own (HFLM pads with 0 anyway)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|bos|>",
                                   pad_token="<|bos|>")


@pytest.fixture(scope="module")
def hflm(tokenizer, tiny_llama):
    from lm_eval.models.huggingface import HFLM
    hf_tok = hf_tokenizer(tokenizer)
    for text in [*_task().examples[0].choices, "Question: What is 6 * 7?\nAnswer: 42",
                 "x" * 200, "def add(a, b):\n    return a + b\n"]:   # precondition: same ids
        assert hf_tok.encode(text, add_special_tokens=False) == tokenizer.encode(text)
    return HFLM(pretrained=tiny_llama.to_hf(), tokenizer=hf_tok, batch_size=4, device="cpu",
                add_bos_token=True, max_length=tiny_llama.config.block_size)


# lm-eval runs HF's eager attention, we run SDPA, on the same fp32 weights: week04 shows the
# logits agree to 1e-5, so per-token log-probs agree to ~1e-5 and a sum of at most 64 of them
# to well under 1e-3. (On this machine the two even agree to the last bit.)
LL_TOL = 1e-3


def test_loglikelihood_equals_lm_evals_hflm(tokenizer, tiny_llama, hflm):
    # a one-token continuation that greedy decoding produces (the first word prefix whose
    # argmax token is whole text), so that is_greedy is True at least once
    words = "Question: What is the capital of France? Answer: Paris".split(" ")
    for k in range(1, len(words) + 1):
        ctx = " ".join(words[:k])
        with torch.no_grad():
            top = int(tiny_llama(torch.tensor([[tokenizer.bos_id, *tokenizer.encode(ctx)]]))
                      [0, -1].argmax())
        greedy = tokenizer.decode([top])
        if "\ufffd" not in greedy and tokenizer.encode(ctx + greedy) == tokenizer.encode(ctx) + [top]:
            break
    else:
        pytest.fail("no word prefix has a greedy next token that is whole text")
    pairs = [("Question: What is the capital of France?\nAnswer:", " Paris"),
             ("Answer: ", "blue"),                      # trailing space moves to the continuation
             ("", "hello world"),                       # empty context: <|bos|> alone
             ("x" * 200, " tail"),                      # longer than block_size: cut on the left
             ("The quick brown", " fox jumps over the lazy dog." * 3),   # a long continuation
             (ctx, greedy)]
    reqs = [_req("loglikelihood", p, i) for i, p in enumerate(pairs)]
    got = NanochatLM(tiny_llama, tokenizer, batch_size=4).loglikelihood(reqs)
    want = hflm.loglikelihood(reqs)
    assert [g for _, g in got] == [g for _, g in want]
    assert want[-1][1] is True                          # the greedy case is exercised
    for (lp, _), (ref, _) in zip(got, want):
        assert lp == pytest.approx(ref, abs=LL_TOL)
        assert lp < 0


def test_a_context_ending_in_a_newline_is_split_like_lm_eval(tokenizer, tiny_llama, hflm):
    reqs = [_req("loglikelihood", ("Question: What colour is the sky?\nAnswer:\n", "blue"))]
    (got,) = NanochatLM(tiny_llama, tokenizer).loglikelihood(reqs)
    (want,) = hflm.loglikelihood(reqs)
    assert got[0] == pytest.approx(want[0], abs=LL_TOL)


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


def test_simple_evaluate_on_a_local_task(tmp_path, tokenizer, tiny_llama, hflm):
    """lm-eval loads a JSON-lines task from a local YAML and scores it twice, through our
    adapter and through its own HFLM on the same weights: the same acc / acc_norm and the
    same per-choice log-likelihoods, which are also what evaluate_mc reports."""
    from lm_eval.tasks import TaskManager
    task = _task()
    name = write_lm_eval_task(task, tmp_path / "tasks")

    def run(lm):
        out = lm_eval.simple_evaluate(model=lm, tasks=[name], num_fewshot=0, log_samples=True,
                                      task_manager=TaskManager(include_path=str(tmp_path / "tasks"),
                                                               include_defaults=False),
                                      bootstrap_iters=0)
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        scores = [[float(r[0][0]) if isinstance(r[0], (list, tuple)) else float(r[0])
                   for r in s["filtered_resps"]] for s in samples]
        return out["results"][name], scores

    metrics, scores = run(NanochatLM(tiny_llama, tokenizer, batch_size=8))
    ref_metrics, ref_scores = run(hflm)
    ours = evaluate_mc(tiny_llama, tokenizer, task)
    assert len(ref_scores) == len(task.examples)
    for key in ("acc,none", "acc_norm,none"):
        assert metrics[key] == pytest.approx(ref_metrics[key])
    assert ours.acc == pytest.approx(ref_metrics["acc,none"])
    assert ours.acc_norm == pytest.approx(ref_metrics["acc_norm,none"])
    for got, from_harness, want in zip(scores, ours.scores, ref_scores):
        # lm-eval batches the requests in its own order, so padded shapes (and fp32 reductions)
        # differ from evaluate_mc's; the HF side also runs another attention kernel: LL_TOL
        assert got == pytest.approx(want, abs=LL_TOL)
        assert from_harness == pytest.approx(want, abs=LL_TOL)


def test_acc_norm_per_character_and_ties_equal_lm_evals_process_results(tmp_path, tokenizer,
                                                                        uniform):
    """lm-eval's own metric code (``ConfigurableTask.process_results``: ``np.argmax(lls /
    len(choice))``, characters, first maximum wins) scores a task built so that the rules
    matter, and evaluate_mc must agree on every document. A uniform model (every token costs
    L = ln V; our adapter gives lm-eval the log-likelihoods, evaluate_mc is not involved):

    - 0: `` zq`` 3 tokens / 3 chars, `` Question`` 2 / 9, `` the`` 1 / 4: per char -> 1
      (gold), per token a tie -> 0 (first) or 2 (last);
    - 1: `` zq``, `` quickz`` 6 / 7, `` café`` 5 / 5 chars / 6 bytes: per char -> 1 (gold),
      per byte -> 2, per token -> 0 or 2;
    - 2, 5: `` A``, `` B``, `` C`` tie everywhere -> 0: right for gold 0, wrong for gold 2;
    - 3, 4: `` zq`` 3 / 3, then `` qz``, `` ab``, `` ba`` 2 / 3 each tie -> 1: right for
      gold 1, wrong for gold 3.

    So lm-eval's acc_norm per document is 1, 1, 1, 1, 0, 0 and its acc 2/6 (the raw sum picks
    2, 0, 0, 1, 1, 0); per-token normalisation or a last-wins tie-break disagree somewhere."""
    from lm_eval.tasks import TaskManager
    rows = [([" zq", " Question", " the"], 1), ([" zq", " quickz", " caf\u00e9"], 1),
            ([" A", " B", " C"], 0), ([" zq", " qz", " ab", " ba"], 1),
            ([" zq", " qz", " ab", " ba"], 3), ([" A", " B", " C"], 2)]
    task = MCTask("norm_ties", [MCExample(f"Question {i}?\nAnswer:", c, gold=g, id=str(i))
                                for i, (c, g) in enumerate(rows)])
    name = write_lm_eval_task(task, tmp_path / "tasks")
    out = lm_eval.simple_evaluate(model=NanochatLM(uniform, tokenizer, batch_size=8), tasks=[name],
                                  num_fewshot=0, log_samples=True, bootstrap_iters=0,
                                  task_manager=TaskManager(include_path=str(tmp_path / "tasks"),
                                                           include_defaults=False))
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    want = [s["acc_norm"] for s in samples]
    assert want == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]          # lm-eval's rule, as derived above
    ours = evaluate_mc(uniform, tokenizer, task)
    assert [float(p == ex.gold) for p, ex in zip(ours.predictions, task.examples)] == want
    assert ours.acc_norm == pytest.approx(out["results"][name]["acc_norm,none"])
    assert ours.acc == pytest.approx(out["results"][name]["acc,none"]) == pytest.approx(2 / 6)
