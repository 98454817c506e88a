"""The fine-tuning harness: its arithmetic batches, and full / LoRA / QLoRA through week03's Trainer.

The reference for the training is the loop written out with ``torch.optim.AdamW``
on the same batches (the same generator): the Trainer must move exactly the
parameters the method trains (everything, or only the LoRA matrices) as that loop does.
"""

import copy
import re

import pytest
import torch
import torch.nn.functional as F

from week06_lora import inject_lora
from week06_lora.finetune import VOCAB, FinetuneConfig, arithmetic_batch, finetune, pretrain

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_arithmetic_batch_trains_only_answer_characters():
    """Decode each row back to text: the trained targets are exactly the characters of the
    answers (``15;`` after ``7+8=``), every other target is -1."""
    x, y = arithmetic_batch("+", 3, 20, torch.Generator().manual_seed(0), digits=1)
    assert x.shape == y.shape == (3, 20)
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        text = "".join(VOCAB[i] for i in row_x) + "?"       # the last target may be masked
        answers = {m.start() + k for m in re.finditer(r"(?<==)[-0-9]+;", text + ";")
                   for k in range(len(m.group()))}
        for t, target in enumerate(row_y):
            if t + 1 in answers and t + 1 < 20:
                assert target == VOCAB.index(text[t + 1])
            elif t + 1 < 20:
                assert target == -1
    with pytest.raises(ValueError, match="op must be"):
        arithmetic_batch("*", 1, 8, torch.Generator())


@pytest.fixture(scope="module")
def base():
    return pretrain(steps=2, progress=False)


def _reference(base, cfg, params_of):
    """The same fine-tune written out: torch.optim.AdamW, no clipping, constant lr."""
    model = copy.deepcopy(base)
    torch.manual_seed(0)                                    # LoRA's A is drawn at injection
    if cfg.method == "lora":
        inject_lora(model, r=cfg.r, alpha=cfg.alpha)
    params = params_of(model)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    losses = []
    for _ in range(cfg.steps):
        x, y = arithmetic_batch(cfg.op, cfg.batch_size, cfg.T, gen, digits=cfg.digits)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


@pytest.mark.parametrize("method", ["full", "lora"])
def test_finetune_equals_a_hand_written_torch_loop(base, method, tmp_path, monkeypatch):
    """4 steps: same weights (1e-5) and same logged losses as the torch loop; LoRA leaves the
    base weights bit-identical and trains only the adapters."""
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path))
    cfg = FinetuneConfig(method=method, steps=4, lr=3e-3, batch_size=4, T=32, r=4, alpha=8.0,
                         log_every=2)
    torch.manual_seed(0)
    out = finetune(base, cfg, progress=False)
    if method == "full":
        ref, losses = _reference(base, cfg, lambda m: list(m.parameters()))
    else:
        ref, losses = _reference(base, cfg, lambda m: [p for n, p in m.named_parameters()
                                                       if ".lora." in n])
    assert out["steps"] == [0, 2, 3]
    assert out["losses"] == pytest.approx([losses[s] for s in out["steps"]], rel=1e-5)
    got = dict(out["model"].named_parameters())
    for n, p in ref.named_parameters():
        torch.testing.assert_close(got[n], p, rtol=1e-5, atol=1e-6, msg=n)
    if method == "lora":
        trained = {n for n, p in got.items() if p.requires_grad}
        assert trained and all(".lora." in n for n in trained)
        for n, p in base.named_parameters():                 # LoRALinear keeps the base's names
            assert torch.equal(got[n], p), n


def test_qlora_trains_only_the_adapters(base, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path))
    cfg = FinetuneConfig(method="qlora", steps=2, batch_size=2, T=16, r=4, alpha=8.0,
                         qlora_compute="float32")
    from week06_lora.qlora import quantize_model

    out = finetune(base, cfg, progress=False)
    model = out["model"]
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(".lora." in n for n in trained)
    assert out["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert len(out["losses"]) == 2
    # the adapters moved (B starts at zero), the 4-bit base did not: its codes and scales
    # equal a fresh quantisation of the untouched base
    assert all(p.abs().max() > 0 for n, p in model.named_parameters() if n.endswith(".B"))
    fresh = copy.deepcopy(base)
    quantize_model(fresh, compute_dtype=torch.float32)
    frozen = dict(fresh.named_buffers())
    nf4 = {n: b for n, b in model.named_buffers() if ".nf4_" in n}
    assert nf4 and all(torch.equal(b, frozen[n]) for n, b in nf4.items())
