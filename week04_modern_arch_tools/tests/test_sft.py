"""The tool-use fine-tune: its collate, and its training through week03's Trainer.

The reference for ``finetune`` is the loop written out with ``torch.optim.AdamW``
and ``torch.nn.utils.clip_grad_norm_`` on the same batches (``random.Random(seed)``
drawing distinct conversations per batch).
"""

import random

import pytest
import torch
import torch.nn.functional as F

from shared import read_metrics
from week04_modern_arch_tools import Llama, LlamaConfig, make_tool_dataset, render_conversation
from week04_modern_arch_tools.sft import collate, finetune

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_collate_masks_everything_but_the_assistants_tokens(tokenizer):
    """Row b: x = ids[:-1]; y[t] = ids[t + 1] where render_conversation marks token t + 1 as
    the assistant's, else -1; the shorter row is padded with 0 / -1 after its tokens."""
    convs = make_tool_dataset("arithmetic", 2, seed=0)
    convs[1] = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    x, y = collate(convs, tokenizer, block_size=200)
    rows = [render_conversation(c, tokenizer, max_tokens=201) for c in convs]
    T = max(len(ids) for ids, _ in rows) - 1
    assert x.shape == y.shape == (2, T)
    for b, (ids, mask) in enumerate(rows):
        n = len(ids) - 1
        assert x[b, :n].tolist() == ids[:-1] and (x[b, n:] == 0).all()
        want = [ids[t + 1] if mask[t + 1] else -1 for t in range(n)] + [-1] * (T - n)
        assert y[b].tolist() == want
    assert 0 < (y[0] >= 0).sum() < len(rows[0][0]) - 1      # the user's turn is not trained


def _tiny(tokenizer):
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=tokenizer.vocab_size, block_size=96, n_layer=1,
                             n_head=2, n_kv_head=1, n_embd=32))


def test_finetune_equals_a_hand_written_torch_loop(tokenizer, tmp_path, monkeypatch):
    """6 steps of batch 4 (distinct conversations each) through the Trainer equal 6 steps of
    torch.optim.AdamW(betas 0.9/0.999, no decay) + clipping at 1 on the same batches; the
    losses go to a week04-tooluse metrics run."""
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    convs = make_tool_dataset("arithmetic", 10, seed=0)
    model, ref = _tiny(tokenizer), _tiny(tokenizer)
    losses = finetune(model, tokenizer, convs, steps=6, batch_size=4, lr=3e-3, seed=1,
                      progress=False)
    assert not model.training
    rng = random.Random(1)
    opt = torch.optim.AdamW(ref.parameters(), lr=3e-3, betas=(0.9, 0.999), weight_decay=0.0)
    want = []
    for _ in range(6):
        x, y = collate(rng.sample(convs, 4), tokenizer, ref.config.block_size)
        loss = F.cross_entropy(ref(x).flatten(0, 1), y.flatten(), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        want.append(loss.item())
    assert losses == pytest.approx(want, rel=1e-5)
    for (n, a), b in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)
    (run,) = (tmp_path / "runs").glob("week04-tooluse-*")
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 7))


def test_finetune_without_logging_writes_nothing(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    convs = make_tool_dataset("arithmetic", 3, seed=0)
    losses = finetune(_tiny(tokenizer), tokenizer, convs, steps=2, batch_size=8, log=False,
                      progress=False)
    assert len(losses) == 2 and not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="no conversations"):
        finetune(_tiny(tokenizer), tokenizer, [], steps=1)
