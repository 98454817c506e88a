"""LLM-JEPA on week04's Llama: the views come from inspect, the hidden states from the model's
own forward, padding cannot leak, the loss is week03's CE plus the JEPA term, and a tiny
two-arm experiment reports intervals."""

import inspect
import textwrap

import numpy as np
import pytest
import torch

from track_jepa import text_jepa as tj
from week01_transformer import CharTokenizer
from week03_training import token_cross_entropy
from week04_modern_arch_tools import Llama, LlamaConfig

pytestmark = pytest.mark.stretch


def _model(vocab=40):
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=vocab, block_size=64, n_layer=2, n_head=2, n_kv_head=2,
                             n_embd=32))


def test_pairs_are_docstrings_and_signatures_from_inspect():
    pairs = tj.docstring_pairs(modules=("textwrap",), max_chars=200)
    doc = " ".join(inspect.getdoc(textwrap.dedent).split("\n\n")[0].split())
    assert (doc, f"def dedent{inspect.signature(textwrap.dedent)}") in pairs
    assert len(pairs) == len(set(pairs)) > 3
    split = [tj.held_out(p) for p in tj.docstring_pairs()]
    assert 0.1 < sum(split) / len(split) < 0.3                   # the 20% hash split


def test_hidden_and_logits_equal_the_models_forward():
    model = _model()
    idx = torch.randint(0, 40, (3, 17))
    hidden, logits = tj.hidden_and_logits(model, idx)
    torch.testing.assert_close(logits, model(idx))
    assert hidden.shape == (3, 17, 32)


def test_right_padding_does_not_change_the_last_real_hidden_state():
    model = _model()
    views = [[1, 2, 3, 4, 5], [6, 7]]
    ids, last = tj.pad_views(views)
    assert last.tolist() == [4, 1] and ids.shape == (2, 5)
    h, _ = tj.hidden_and_logits(model, ids)
    alone, _ = tj.hidden_and_logits(model, torch.tensor([[6, 7]]))
    torch.testing.assert_close(h[1, 1], alone[0, 1])


def test_loss_is_cross_entropy_plus_lam_times_one_minus_cosine():
    model = _model()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 40, (2, 12), generator=g)
    a, a_last = tj.pad_views([[1, 2, 3, 9], [4, 5, 9]])
    b, b_last = tj.pad_views([[7, 8], [6, 6, 6]])
    batch = {"x": x[:, :-1], "y": x[:, 1:], "a": a, "a_last": a_last, "b": b, "b_last": b_last}
    ce = token_cross_entropy(model(batch["x"]), batch["y"])
    loss0, m0 = tj.jepa_lm_loss(model, batch, lam=0.0)
    torch.testing.assert_close(loss0, ce)
    ha, _ = tj.hidden_and_logits(model, a)
    hb, _ = tj.hidden_and_logits(model, b)
    cos = torch.nn.functional.cosine_similarity(ha[[0, 1], a_last], hb[[0, 1], b_last], dim=-1)
    loss2, m2 = tj.jepa_lm_loss(model, batch, lam=2.0)
    torch.testing.assert_close(loss2, ce + 2.0 * (1 - cos).mean())
    loss2.backward()
    assert model.tok_emb.weight.grad[7].abs().sum() > 0            # view b's tokens are trained


def _tiny_corpus(tmp_path):
    rng = np.random.default_rng(0)
    words = ("return the value of every object list string number file path module "
             "function default argument keyword iterator").split()
    for i in range(40):
        text = " ".join(rng.choice(words, size=300)) + "\n"
        (tmp_path / f"doc{i:02d}.txt").write_text(text)
    return str(tmp_path)


def test_tiny_experiment_reports_both_arms_with_intervals(tmp_path):
    cfg = tj.TextJEPAConfig(n_layer=1, n_embd=32, n_head=2, batch_size=4, pair_batch=4, steps=8,
                            eval_tokens=1500, cloze_n=12, corpus=_tiny_corpus(tmp_path),
                            max_view=40)
    r = tj.run_text_experiment(cfg, seeds=(0, 1), progress=False)
    for key in ("bpb_lm", "bpb_jepa", "cloze_lm", "cloze_jepa", "retrieval_lm"):
        assert np.isfinite(r[key])
    lo_hi = r["bpb_diff"]
    assert lo_hi[1] <= lo_hi[0] <= lo_hi[2]
    d, lo, hi = r["cloze_diff_boot"]
    assert lo <= d <= hi and r["n_retrieval"] > 10


def test_intervals_against_scipy_and_a_known_bootstrap():
    """t interval: mean +- t_{0.975, n-1} s / sqrt(n) (scipy.stats.t.interval agrees);
    identical arms give a zero bootstrap interval."""
    from scipy import stats
    d = [0.1, 0.3, 0.2, 0.4]
    m, lo, hi = tj.t_interval(d)
    ref = stats.t.interval(0.95, len(d) - 1, loc=np.mean(d), scale=stats.sem(d))
    assert (lo, hi) == pytest.approx(ref)
    hits = np.array([1.0, 0.0, 1.0, 1.0])
    assert tj.bootstrap_diff(hits, hits) == (0.0, 0.0, 0.0)


def test_char_tokenizer_holds_the_pred_token():
    tok = CharTokenizer.from_text("abc" + tj.PRED_CHAR)
    assert tok.decode(tok.encode(tj.PRED_CHAR)) == tj.PRED_CHAR
