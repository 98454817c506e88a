"""Loss / perplexity / bits per byte against hand-derived values and a direct reference."""

import math

import pytest
import torch
import torch.nn.functional as F

from week02_bpe import token_bytes
from week05_eval import evaluate_ids, evaluate_text, unigram_bpb
from week05_eval.metrics import encode_docs

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_uniform_model_has_loss_log_v(tokenizer, uniform):
    """A uniform model pays ln V nats on every token, so ppl = V and
    bpb = N ln V / (ln 2 * bytes), with N tokens covering `bytes` bytes."""
    docs = ["hello world, this is a test.", "def add(a, b): return a + b"]
    res = evaluate_text(uniform, tokenizer, docs, block_size=8, batch_size=3)
    V = tokenizer.vocab_size
    ids = encode_docs(tokenizer, docs)
    assert res.tokens == len(ids) - 1
    # log_softmax runs in fp32 (relative error ~1e-7 per token): 1e-6 covers it
    assert res.loss == pytest.approx(math.log(V), rel=1e-6)
    assert res.ppl == pytest.approx(V, rel=1e-5)
    nbytes = int(token_bytes(tokenizer)[torch.tensor(ids[1:])].sum())
    assert res.bytes == nbytes
    # the second document's <|bos|> is a predicted token with 0 bytes: its loss still counts
    assert res.bpb == pytest.approx(res.tokens * math.log(V) / (math.log(2) * nbytes), rel=1e-6)


def test_matches_direct_cross_entropy(tokenizer, tiny_llama):
    """Same windows through F.cross_entropy by hand, and bpb from its definition with nothing
    of the package's: the summed nats over ln 2 times the text's UTF-8 bytes (the stream is
    <|bos|> + the text and <|bos|> itself is never a target, so the targets cover exactly the
    text's bytes). fp32 sums of ~100 terms agree to ~1e-6 relative, the tolerance allows for
    the summation order."""
    text = "The quick brown fox jumps over the lazy dog. " * 6
    ids = encode_docs(tokenizer, text)
    T = 16
    nats, tgts = [], []
    with torch.no_grad():
        for s in range(0, len(ids) - 1, T):
            w = torch.tensor(ids[s:s + T + 1])
            logits = tiny_llama(w[None, :-1])[0]
            nats.append(F.cross_entropy(logits, w[1:], reduction="none"))
            tgts.append(w[1:])
    nats, tgts = torch.cat(nats), torch.cat(tgts)
    res = evaluate_text(tiny_llama, tokenizer, text, block_size=T, batch_size=4)
    assert res.tokens == len(ids) - 1
    assert res.loss == pytest.approx(nats.mean().item(), rel=1e-5)
    assert tokenizer.bos_id not in tgts.tolist()        # every target is a piece of the text
    nbytes = len(text.encode("utf-8"))
    assert res.bytes == nbytes
    bpb = nats.double().sum().item() / (math.log(2) * nbytes)
    assert res.bpb == pytest.approx(bpb, rel=1e-5)


def test_batch_size_does_not_change_the_result(tokenizer, tiny_llama):
    ids = encode_docs(tokenizer, "abc def ghi jkl mno pqr stu vwx yz " * 5)
    tb = token_bytes(tokenizer)
    a = evaluate_ids(tiny_llama, ids, tb, block_size=12, batch_size=1)
    b = evaluate_ids(tiny_llama, ids, tb, block_size=12, batch_size=7)
    assert a.tokens == b.tokens
    assert a.loss == pytest.approx(b.loss, rel=1e-5)   # padding rows only: fp32 noise


def test_unigram_hand_computed():
    """Train ids [0, 0, 1] with V = 3: add-one counts [3, 2, 1] / 6. Val [2, 0, 2] scores its
    last two tokens: nats = -ln(3/6) - ln(1/6); bytes 1 + 2 with token_bytes [1, 1, 2]."""
    tb = torch.tensor([1, 1, 2])
    res = unigram_bpb([0, 0, 1], [2, 0, 2], tb)
    nats = -math.log(3 / 6) - math.log(1 / 6)
    assert res.tokens == 2 and res.bytes == 3
    assert res.loss == pytest.approx(nats / 2)
    assert res.bpb == pytest.approx(nats / (math.log(2) * 3))


def test_too_short_input_is_a_clear_error(tokenizer, uniform):
    with pytest.raises(ValueError, match="at least 2 tokens"):
        evaluate_ids(uniform, [5], token_bytes(tokenizer))


def test_unigram_lm_matches_unigram_bpb(tokenizer):
    """UnigramLM through evaluate_ids gives the numbers unigram_bpb computes in closed form
    (fp32 log-probabilities vs float64: 1e-6 relative)."""
    from week05_eval.metrics import UnigramLM
    train = encode_docs(tokenizer, ["hello world, hello python. " * 5])
    val = encode_docs(tokenizer, ["hello there, world of python."])
    tb = token_bytes(tokenizer)
    closed = unigram_bpb(train, val, tb)
    model = UnigramLM(train, tokenizer.vocab_size)
    res = evaluate_ids(model, val, tb, block_size=8)
    assert res.loss == pytest.approx(closed.loss, rel=1e-6)
    assert res.bpb == pytest.approx(closed.bpb, rel=1e-6)
