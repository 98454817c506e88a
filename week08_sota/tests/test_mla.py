"""Multi-head Latent Attention: the absorbed path, the naive path and the full forward agree;
cached decode (prefill + steps, left padding) equals the forward without a cache; the latent
cache holds d_c + d_r numbers per token per layer; the model reloads and generates.

Tolerance: 1e-5 in float32. The paths differ only in the order of the sums (W_UK applied to
the query instead of the key: a (d_nope x d_c) product regrouped), and with weights of std
0.02-0.3 and values of order 1 the rounding differences stay around 1e-7.
"""

import pytest
import torch

from week01_transformer import DecodeConfig, decode
from week08_sota.config import SotaConfig
from week08_sota.mla import LatentCache, MLAttention, softmax_scale, yarn_mscale
from week08_sota.model import SotaModel

pytestmark = pytest.mark.core

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread beats two fighting over a shared 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def cfg(**kw) -> SotaConfig:
    base = dict(moe=False)
    base.update(kw)
    return SotaConfig.preset("test", **base)


def randomise(model: SotaModel) -> SotaModel:
    """Norm weights away from 1 and larger projections, so a wrong path shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".ln_" in name or name.startswith("ln_f"):
                p.uniform_(0.5, 1.5)
            elif p.dim() == 2 and "emb" not in name:
                p.normal_(0, 0.3 / p.size(1) ** 0.5 * 4)
    return model.eval()


MLA_CONFIGS = {
    "q-latent-sdpa": dict(),
    "q-plain-explicit": dict(q_lora_rank=0, attention="explicit"),
    "yarn": dict(rope_scaling={"rope_type": "yarn", "factor": 4.0,
                               "original_max_position_embeddings": 8, "beta_fast": 32,
                               "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 1.0}),
}


@pytest.mark.parametrize("kw", MLA_CONFIGS.values(), ids=MLA_CONFIGS.keys())
def test_absorbed_equals_naive_forward(kw):
    model = randomise(SotaModel(cfg(**kw)))
    attn = model.blocks[1].attn
    x = torch.randn(3, 11, 32)
    with torch.no_grad():
        for pad in (None, torch.tensor([0, 4, 7])):
            ctx = model.context(11, pad=pad)
            naive = attn(x, ctx)
            absorbed = attn(x, ctx, absorb=True)
            torch.testing.assert_close(absorbed, naive, atol=ATOL, rtol=0)


def test_naive_forward_is_the_textbook_formula():
    """Each head: softmax([q_nope; q_rope] . [W_UK c; k_rope] * scale) @ (W_UV c), no cache."""
    model = randomise(SotaModel(cfg(q_lora_rank=0)))
    attn = model.blocks[0].attn
    x = torch.randn(2, 6, 32)
    ctx = model.context(6)
    with torch.no_grad():
        got = attn(x, ctx)
        H, dn, dr, dv, dc = 4, 8, 4, 8, 16
        q = (x @ attn.q_proj.weight.T).view(2, 6, H, dn + dr).transpose(1, 2)
        ckv, kr = (x @ attn.kv_a.weight.T).split([dc, dr], -1)
        ckv = attn.kv_norm(ckv)
        from week04_modern_arch_tools.rope import apply_rope

        qr = apply_rope(q[..., dn:], ctx.cos, ctx.sin)
        kr = apply_rope(kr[:, None], ctx.cos, ctx.sin)  # (B, 1, T, dr)
        kv = (ckv @ attn.kv_b.weight.T).view(2, 6, H, dn + dv).transpose(1, 2)
        scores = (q[..., :dn] @ kv[..., :dn].transpose(-1, -2) + qr @ kr.transpose(-1, -2))
        scores = scores / (dn + dr) ** 0.5
        scores = scores.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf"))
        y = scores.softmax(-1) @ kv[..., dn:]  # (B, H, T, dv)
        want = y.transpose(1, 2).reshape(2, 6, H * dv) @ attn.proj.weight.T
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("absorb", [True, False], ids=["absorbed", "naive"])
@pytest.mark.parametrize("kw", MLA_CONFIGS.values(), ids=MLA_CONFIGS.keys())
def test_cached_decode_equals_the_forward_without_cache(kw, absorb):
    """Prefill 8 tokens then 6 one-token steps, rows left-padded by 0, 3 and 5: every step's
    logits equal the full no-cache forward of the padded sequence at that position."""
    model = randomise(SotaModel(cfg(mla_absorb=absorb, **kw)))
    for packed in (False, True):
        if packed:
            copies = model.decode_weights()
            attn = model.blocks[0].attn
            assert id(attn.kv_a) in copies and id(attn.proj) in copies
        else:
            model.release_decode_weights()
        for pad in (None, torch.tensor([0, 3, 5])):
            seq = torch.randint(0, 64, (3, 14))
            with torch.no_grad():
                full = model(seq, pad=pad)  # (B, 14, V)
                cache = model.new_cache(3, 20, pad=pad)
                assert isinstance(cache, LatentCache)
                pre = model(seq[:, :8], cache=cache)
                torch.testing.assert_close(pre, full[:, :8], atol=ATOL, rtol=0)
                for t in range(8, 14):
                    got = model.step(seq[:, t:t + 1], cache)  # (B, V)
                    torch.testing.assert_close(got, full[:, t], atol=ATOL, rtol=0)
            assert cache.pos == 14


def test_left_padded_rows_get_their_unpadded_logits():
    model = randomise(SotaModel(cfg()))
    rows = [torch.randint(0, 64, (n,)) for n in (7, 12, 3)]
    L = 12
    pad = torch.tensor([L - len(r) for r in rows])
    batch = torch.stack([torch.cat([torch.zeros(L - len(r), dtype=torch.long), r]) for r in rows])
    with torch.no_grad():
        cache = model.new_cache(3, L + 1, pad=pad)
        model(batch, cache=cache)
        step = model.step(torch.tensor([[5], [6], [7]]), cache)
        for b, r in enumerate(rows):
            ext = model(torch.cat([r, torch.tensor([5 + b])])[None])[0, -1]
            torch.testing.assert_close(step[b], ext, atol=ATOL, rtol=0)


def test_decoding_loop_with_the_latent_cache_equals_no_cache():
    """week01's loop (prefill, steps, rows finishing early: ``cache.keep``) gives the same
    greedy tokens with the latent cache as recomputing everything, MoE layers included."""
    model = randomise(SotaModel(SotaConfig.preset("test")))
    prompts = [[1, 5, 9, 3], [2, 7], [4, 4, 4, 4, 4, 8]]
    cached = decode(model, prompts, DecodeConfig(max_new_tokens=10, temperature=0,
                                                 stop_tokens=(3,)))
    plain = decode(model, prompts, DecodeConfig(max_new_tokens=10, temperature=0,
                                                stop_tokens=(3,), use_cache=False))
    assert [r.ids for r in cached] == [r.ids for r in plain]
    out = model.generate(torch.tensor([[1, 2, 3]]), 5, temperature=0)
    assert out.shape == (1, 8)


def test_latent_cache_nbytes_is_the_formula():
    """(kv_lora_rank + qk_rope_head_dim) * layers * rows * tokens * bytes: (16 + 4) * 2 * 3 *
    20 * 4 = 9,600 bytes in float32; a bf16 model halves it."""
    model = SotaModel(cfg())
    cache = model.new_cache(3, 20)
    c = model.config
    assert cache.nbytes() == (c.kv_lora_rank + c.qk_rope_head_dim) * c.n_layer * 3 * 20 * 4 == 9600
    assert model.kv_cache_bytes(3, 20, bytes_per_value=4) == c.kv_cache_bytes(3, 20, 4) == 9600
    assert model.to(torch.bfloat16).new_cache(3, 20).nbytes() == 4800
    assert c.latent_cache_elements() == 20
    assert SotaConfig.preset("d20-mla-moe").latent_cache_elements() == 576


def test_latent_cache_update_keep_and_errors():
    cache = LatentCache(2, 3, 4, 2, 5, pad=torch.tensor([0, 1, 2]))
    with torch.no_grad():
        c, r = cache.update(1, torch.ones(3, 2, 4), torch.full((3, 2, 2), 2.0))
        assert c.shape == (3, 2, 4) and r.shape == (3, 2, 2)
        cache.advance(2)
        c, r = cache.update(1, torch.arange(3.0)[:, None].expand(3, 4), torch.zeros(3, 2))
        assert c.shape == (3, 3, 4) and torch.equal(c[:, 2, 0], torch.arange(3.0))
        assert torch.equal(cache.joint(1), torch.cat((c, r), -1))
    assert cache.positions(1).tolist() == [[2], [1], [0]]
    cache.keep(torch.tensor([2, 0]))
    assert cache.batch_size == 2 and cache.pad.tolist() == [2, 0]
    assert cache.kv[1, :, 2, 0].tolist() == [2.0, 0.0]
    cache.advance(1)
    with pytest.raises(ValueError, match="holds 5 positions"):
        cache.update(0, torch.zeros(2, 3, 4), torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="kv_lora_rank must be a positive int"):
        LatentCache(2, 3, 0, 2, 5)
    with pytest.raises(ValueError, match=r"pad must be a tensor of shape \(3,\)"):
        LatentCache(2, 3, 4, 2, 5, pad=torch.tensor([0, 1]))


def test_training_through_the_cache_keeps_gradients():
    model = SotaModel(cfg())
    cache = model.new_cache(2, 10)
    loss = model(torch.randint(0, 64, (2, 6)), cache=cache).sum()
    loss.backward()
    assert model.blocks[0].attn.kv_b.weight.grad is not None


def test_softmax_scale_and_yarn_mscale():
    """Plain: 1 / sqrt(8 + 4). YaRN factor 40 with mscale_all_dim 1: times (0.1 ln 40 + 1)^2."""
    assert softmax_scale(cfg()) == pytest.approx(12 ** -0.5)
    y = cfg(rope_scaling={"rope_type": "yarn", "factor": 40, "original_max_position_embeddings": 4,
                          "mscale": 1.0, "mscale_all_dim": 1.0})
    assert yarn_mscale(40, 1.0) == pytest.approx(1.368888, abs=1e-6)
    assert softmax_scale(y) == pytest.approx(12 ** -0.5 * 1.368888 ** 2, rel=1e-6)
    assert yarn_mscale(1.0) == 1.0


BAD = [
    (dict(attn_type="mha"), "attn_type must be one of"),
    (dict(kv_lora_rank=0), "kv_lora_rank must be a positive int"),
    (dict(q_lora_rank=-1), "q_lora_rank must be a non-negative int"),
    (dict(qk_rope_head_dim=5), "qk_rope_head_dim must be even"),
    (dict(v_head_dim=2.5), "v_head_dim must be a positive int"),
    (dict(qk_norm=True), "qk_norm applies to attn_type='gqa' only"),
    (dict(sliding_window=4), "sliding_window applies to attn_type='gqa' only"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}),
     "original_max_position_embeddings'] must be a positive number"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8,
                        "beta": 3}), "unknown YaRN keys"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8,
                        "beta_fast": 1, "beta_slow": 2}), "beta_fast must exceed beta_slow"),
    (dict(attn_type="gqa", n_kv_head=2, rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8}),
     "YaRN is implemented for MLA"),
    (dict(rope_scaling={"rope_type": "ntk", "factor": 4.0}), "rope_scaling must be None"),
]


@pytest.mark.parametrize("kw,msg", BAD, ids=[m for _, m in BAD])
def test_bad_config_values_give_clear_errors(kw, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("(", r"\(")):
        cfg(**kw)


def test_mla_needs_the_models_context():
    attn = MLAttention(cfg())
    with pytest.raises(ValueError, match="needs the model's context"):
        attn(torch.randn(1, 3, 32))
    with pytest.raises(TypeError, match="needs a SotaConfig"):
        MLAttention(object())


def test_gqa_variant_uses_weeks_04_attention_and_cache():
    from week01_transformer import KVCache
    from week04_modern_arch_tools.modules import LlamaAttention

    model = SotaModel(cfg(attn_type="gqa", n_kv_head=2))
    assert isinstance(model.blocks[0].attn, LlamaAttention)
    assert isinstance(model.new_cache(1, 8), KVCache)


def test_checkpoint_reloads_through_the_model_registry(tmp_path):
    from shared import load_model, save_model

    model = randomise(SotaModel(SotaConfig.preset("test")))
    idx = torch.randint(0, 64, (2, 9))
    save_model(tmp_path / "sota.safetensors", model)
    back = load_model(tmp_path / "sota.safetensors").eval()
    assert type(back) is SotaModel and back.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(back(idx), model(idx), atol=0, rtol=0)


def test_flops_per_token_counts_active_parameters_and_mla_heads():
    """Dense GQA: week03's 6N + 12 L C T (N without the untied embedding). MLA + MoE: 6 *
    (N - unused experts) + 6 L T H (qk_head_dim + v_head_dim); "test": 2 layers, one MoE
    layer of 4 experts (2 used) of 3 * 32 * 16 weights, H = 4, qk 12, v 8."""
    from week03_training.flops import flops_per_token

    dense = SotaModel(cfg(attn_type="gqa", n_kv_head=2))
    n = dense.num_params() - 64 * 32
    assert flops_per_token(dense, 16) == 6 * n + 12 * 2 * 32 * 16
    model = SotaModel(SotaConfig.preset("test"))
    n = model.num_params() - 64 * 32 - (4 - 2) * 3 * 32 * 16
    assert flops_per_token(model, 16) == 6 * n + 6 * 2 * 16 * 4 * (12 + 8)


def test_presets_build_and_count_their_parameters():
    for name in ("test", "tiny"):
        c = SotaConfig.preset(name)
        assert SotaModel(c).num_params() == c.num_params()
    with pytest.raises(ValueError, match="unknown preset"):
        SotaConfig.preset("huge")


def test_flash_kernel_runs_mla_with_its_value_width():
    """week08's FlashAttention-2 (registered as ``flash2_torch``) takes v of d_v channels
    while q and k have d_nope + d_r: the same logits as SDPA, forward and cached decode."""
    import week08_sota.flash  # noqa: F401  (registers the kernels)

    model = randomise(SotaModel(cfg(qk_nope_head_dim=12, v_head_dim=6)))
    seq = torch.randint(0, 64, (2, 12))
    pad = torch.tensor([0, 3])
    with torch.no_grad():
        want = model(seq, pad=pad)
        model.set_attention("flash2_torch")
        torch.testing.assert_close(model(seq, pad=pad), want, atol=ATOL, rtol=0)
        cache = model.new_cache(2, 12, pad=pad)
        model(seq[:, :9], cache=cache)
        for t in range(9, 12):
            torch.testing.assert_close(model.step(seq[:, t:t + 1], cache), want[:, t],
                                       atol=ATOL, rtol=0)


def test_trains_with_weeks_03_trainer_and_the_moe_loss(tmp_path):
    """MLA + MoE through week03's Trainer with moe_loss_fn (next-token loss + the routers'
    auxiliary terms): the loss falls on a repeating sequence, and the Trainer's checkpoint
    rebuilds through shared.load_model."""
    from shared import load_model
    from shared.batching import SampledBatches, pad_batch
    from week03_training import TrainConfig, Trainer
    from week08_sota.moe import moe_loss_fn

    ids = [i % 17 for i in range(400)]
    windows = [ids[i:i + 17] for i in range(0, 380, 3)]
    model = SotaModel(SotaConfig.preset("test", aux_loss_alpha=0.01, z_loss_coef=1e-3))
    loader = SampledBatches(windows, 8, lambda rows: pad_batch(rows), seed=0)
    cfg_t = TrainConfig(steps=30, lr=5e-3, warmup_steps=0, eval_every=0, progress=False,
                        block_size=16, batch_size=8)
    trainer = Trainer(model, loader, cfg_t, loss_fn=moe_loss_fn, run_dir=tmp_path / "run")
    history = trainer.fit()
    assert history[-1] < 0.5 * history[0]
    back = load_model(trainer.latest()).eval()
    probe = torch.tensor([ids[:16]])
    with torch.no_grad():
        torch.testing.assert_close(back(probe), model.eval()(probe), atol=0, rtol=0)


def test_packed_rows_give_each_document_its_own_logits():
    """week09 packs conversations into rows: MLA (latent RoPE included) and the MoE see
    only their own document under week01's ``segments=`` mask."""
    import dataclasses

    from week08_sota import SOTA_PRESETS, SotaModel

    torch.manual_seed(0)
    model = SotaModel(dataclasses.replace(SOTA_PRESETS["test"], vocab_size=50)).eval()
    g = torch.Generator().manual_seed(1)
    docs = [torch.randint(0, 50, (n,), generator=g) for n in (6, 3, 8)]
    seg = torch.tensor([[i for i, d in enumerate(docs) for _ in range(len(d))]])
    out = model(torch.cat(docs)[None], segments=seg)
    start = 0
    for d in docs:
        torch.testing.assert_close(out[0, start:start + len(d)], model(d[None])[0],
                                   atol=1e-5, rtol=1e-5)
        start += len(d)
