"""The seams weeks 08-12 build on, used end to end from outside weeks 01-07.

This file defines a toy attention and a toy MLP of its own (the way week08
will define MLA and MoE), drops them into week04's model with one class
each, trains the model with week03's Trainer through a ``loss_fn`` that adds
an auxiliary term, generates with week01's decoding loop, saves it and
rebuilds it with ``shared.load_model``, and scores it with week05's report
card. Nothing in weeks 01-07 knows these classes.
"""

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared import load_model, read_metrics, save_model
from shared.batching import SampledBatches, pad_batch
from week01_transformer import DecodeConfig, attention_kernel, decode
from week02_bpe import SPECIAL_TOKENS, BPETokenizer
from week03_training import TrainConfig, Trainer
from week03_training.loss import token_cross_entropy
from week04_modern_arch_tools import Llama, LlamaConfig
from week04_modern_arch_tools.modules import LlamaBlock

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# ---------------------------------------------------------------- the toy parts


class ToyAttention(nn.Module):
    """Attention without positions (NoPE) and a learned gain per head, written from the
    contract alone: ``(config, layer_idx)``, ``forward(x, ctx)``, the cache's ``update``,
    the context's mask, the registered kernel."""

    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.layer_idx, self.n_head, self.hd = layer_idx, config.n_head, config.head_dim
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.gain = nn.Parameter(torch.ones(config.n_head, 1, 1))
        self.kernel = attention_kernel(config.attention)

    def forward(self, x, ctx):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, self.hd).transpose(1, 2)
                   for t in self.qkv(x).split(C, dim=2))  # (B, H, T, hd) each
        if ctx.cache is not None:
            k, v = ctx.cache.update(self.layer_idx, k, v)  # (B, H, pos + T, hd)
        y = self.kernel(q * self.gain, k, v, mask=ctx.mask, causal=ctx.causal)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class ToyMLP(nn.Module):
    """A tanh MLP that records an auxiliary term (the mean square of its activations), the
    way an MoE layer records its balance loss for the loss_fn to add."""

    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 2 * config.n_embd, bias=False)
        self.proj = nn.Linear(2 * config.n_embd, config.n_embd, bias=False)
        self.aux = None

    def forward(self, x):
        h = torch.tanh(self.fc(x))
        self.aux = h.pow(2).mean()
        return self.proj(h)


class ToyBlock(LlamaBlock):
    """Layer 0 keeps week04's parts; the later layers take the toy ones."""

    def make_attention(self, config, layer_idx):
        return super().make_attention(config, layer_idx) if layer_idx == 0 else \
            ToyAttention(config, layer_idx)

    def make_mlp(self, config, layer_idx):
        return super().make_mlp(config, layer_idx) if layer_idx == 0 else ToyMLP(config, layer_idx)


class ToyLlama(Llama):
    block_cls = ToyBlock


AUX_WEIGHT = 0.01


def loss_with_aux(model, batch):
    """Next-token cross-entropy plus the toy MLPs' auxiliary term, both logged."""
    x, y = batch
    ce = token_cross_entropy(model(x), y)
    aux = sum(b.mlp.aux for b in model.blocks if isinstance(b.mlp, ToyMLP))
    return ce + AUX_WEIGHT * aux, {"ce": ce.detach(), "aux": aux.detach()}


# ---------------------------------------------------------------- the test

TEXT = ("def add(a, b):\n    return a + b\n\n" * 6 + "print(add(2, 3))\n" * 6 +
        "The sum of two numbers is their total.\n" * 6)


def test_a_new_attention_and_mlp_train_generate_save_load_and_score(tmp_path):
    tok = BPETokenizer.train(TEXT, 300, special_tokens=SPECIAL_TOKENS)
    tok_path = tok.save(tmp_path / "tokenizer.json")
    ids = tok.encode(TEXT)
    windows = [ids[i:i + 33] for i in range(0, len(ids) - 33, 7)]
    config = LlamaConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=3, n_head=2,
                         n_kv_head=2, n_embd=32)
    torch.manual_seed(0)
    model = ToyLlama(config)
    assert [type(b.attn).__name__ for b in model.blocks] == ["LlamaAttention", "ToyAttention",
                                                            "ToyAttention"]
    assert [type(b.mlp).__name__ for b in model.blocks] == ["SwiGLU", "ToyMLP", "ToyMLP"]

    # -- week03's Trainer, through loss_fn, with an auxiliary term that is logged
    loader = SampledBatches(windows, 8, lambda rows: pad_batch(rows), seed=0)
    run_dir = tmp_path / "run"
    cfg = TrainConfig(steps=40, lr=3e-3, warmup_steps=0, eval_every=0, progress=False,
                      block_size=32, batch_size=8)
    trainer = Trainer(model, loader, cfg, loss_fn=loss_with_aux, run_dir=run_dir)
    history = trainer.fit()
    rows = read_metrics(run_dir)
    assert {"ce", "aux", "loss"} <= set(rows[-1])
    assert rows[-1]["loss"] == __import__("pytest").approx(rows[-1]["ce"] + AUX_WEIGHT *
                                                           rows[-1]["aux"], rel=1e-5)
    assert history[-1] < 0.6 * history[0]  # it learned the repeating text

    # -- week01's decoding loop: the cache runs through the toy attention's contract
    model.eval()
    prompts = [tok.encode("def add(a, b):"), tok.encode("print(")]
    stop = tok.encode("\n")[0]
    cfg_d = DecodeConfig(max_new_tokens=12, temperature=0, stop_tokens=(stop,))
    cached = decode(model, prompts, cfg_d)
    recomputed = decode(model, prompts, DecodeConfig(**{**cfg_d.__dict__, "use_cache": False}))
    assert [r.ids for r in cached] == [r.ids for r in recomputed]
    assert all(r.ids for r in cached)
    with torch.no_grad():  # the one-token step of the toy blocks is their forward
        cache = model.new_cache(1, 10)
        x = torch.tensor([ids[:9]])
        model(x[:, :8], cache=cache)
        torch.testing.assert_close(model.step(x[:, 8:], cache), model(x)[:, -1],
                                   atol=1e-5, rtol=0)

    # -- shared.load_model rebuilds it from the import paths in the checkpoint
    path = save_model(tmp_path / "toy" / "model.safetensors", model,
                      {"tokenizer": str(tok_path)})
    again = load_model(path)
    assert type(again) is ToyLlama and again.config == model.config
    probe = torch.tensor([ids[:20]])
    with torch.no_grad():
        torch.testing.assert_close(again(probe), model(probe), atol=0, rtol=0)
    trained = load_model(trainer.latest())  # the Trainer's own checkpoint rebuilds too
    with torch.no_grad():
        torch.testing.assert_close(trained(probe), model(probe), atol=0, rtol=0)

    # -- week05's report card scores it
    from week05_eval.report import ReportConfig, make_report

    data = tmp_path / "texts"  # held-out text for the report: 16 small documents
    data.mkdir()
    for i in range(16):
        lines = [f"Function number {i} adds two numbers and returns their total.",
                 f"Calling add({i}, 1) returns {i + 1}, as the documentation says.",
                 f"It raises TypeError when argument {i} is not a number at all."]
        (data / f"doc{i:02d}.txt").write_text("\n".join(lines * 2))
    results = make_report(path, tokenizer=tok_path, out=tmp_path / "report",
                          cfg=ReportConfig(limit=4, gen_limit=2, max_tokens=300, tools=False,
                                           progress=False, data=str(data)),
                          runs=tmp_path / "runs")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    bpb = report["results"]["lm"]["bpb"] if "lm" in report["results"] else None
    assert (tmp_path / "report" / "report.md").is_file()
    assert results["paths"]["report"].endswith("report.md")
    assert bpb is None or 0 < bpb < 8
    assert F.softmax(again(probe)[0, -1], -1).sum().item() == __import__("pytest").approx(1.0)
