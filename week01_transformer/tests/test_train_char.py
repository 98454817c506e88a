"""The training script end to end on a small local text (no pydocs parse, a few seconds)."""

from __future__ import annotations

import math

import pytest
import torch

from shared import read_metrics
from week01_transformer.train_char import estimate_loss, load_char_model, main, unigram_entropy

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_unigram_entropy_by_hand():
    """"aab": p(a)=2/3, p(b)=1/3 -> H = -(2/3 ln 2/3 + 1/3 ln 1/3) = 0.63651 nats."""
    ids = torch.tensor([0, 0, 1])
    want = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert unigram_entropy(ids, vocab_size=5) == pytest.approx(want, abs=1e-12)


def test_train_char_beats_unigram_and_saves(tmp_path, monkeypatch, capsys):
    """A periodic text: context predicts every next character, the unigram model cannot.

    60 steps of a 28k-parameter model take the loss well below the unigram
    entropy; the saved checkpoint reloads to the same val loss.
    """
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    text = "the cat sat on the mat. a dog ran to the log. " * 40
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(text)
    run_dir = tmp_path / "run"
    result = main(["--preset", "test", "--corpus", str(corpus), "--steps", "60",
                   "--batch-size", "8", "--block-size", "16", "--lr", "1e-2", "--warmup", "5",
                   "--eval-every", "20", "--eval-batches", "4", "--run-dir", str(run_dir),
                   "--sample-tokens", "30", "--prompt", "the ", "--no-progress", "--device", "cpu"])
    assert result.unigram_loss > 2.0  # ~2.6 nats for this text
    assert result.val_loss < 0.6 * result.unigram_loss
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows if "train_loss" in r] == list(range(60))
    assert sum("val_loss" in r for r in rows) == 4  # steps 0, 20, 40 and the last
    out = capsys.readouterr().out
    assert "unigram baseline" in out and "--- sample ---" in out

    model, tok = load_char_model(run_dir)
    assert model.config.block_size == 16 and tok.vocab_size == len(set(text))
    val = torch.tensor(tok.encode(text[int(len(text) * 0.9):]), dtype=torch.long)  # its 90/10 split
    assert estimate_loss(model, val, 8, 16, 4) == pytest.approx(result.val_loss, abs=1e-5)
    assert result.sample.startswith("the ") and len(result.sample) == 4 + 30


def test_bad_arguments_exit(capsys):
    with pytest.raises(SystemExit):
        main(["--preset", "gpt5"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="must be positive"):
        main(["--steps", "0"])


def test_experiment_switches_reach_the_model(tmp_path, monkeypatch):
    """--no-attn-scale, --no-causal and --norm-position post build (and save) that model."""
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("the cat sat on the mat. " * 40)
    main(["--preset", "test", "--corpus", str(corpus), "--steps", "2", "--batch-size", "2",
          "--eval-every", "0", "--eval-batches", "1", "--run-dir", str(tmp_path / "run"),
          "--sample-tokens", "4", "--no-progress", "--device", "cpu",
          "--no-attn-scale", "--no-causal", "--norm-position", "post",
          "--n-layer", "1", "--n-head", "2", "--n-embd", "16"])
    model, _ = load_char_model(tmp_path / "run")
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd) == (1, 2, 16)
    assert (model.config.attn_scale, model.config.causal, model.config.norm_position) == \
        (False, False, "post")
    assert model.blocks[0].post_norm and model.blocks[0].attn.scale == 1.0
