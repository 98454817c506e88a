"""The Llama-style model against Hugging Face's LlamaForCausalLM, RoPE, GQA and the KV cache."""

import math

import pytest
import torch

from week04_modern_arch_tools import KVCache, Llama, LlamaConfig
from week04_modern_arch_tools.hf import half_to_interleaved, interleaved_to_half
from week04_modern_arch_tools.model import LLAMA_PRESETS, apply_rope, rope_inv_freq

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

transformers = pytest.importorskip("transformers")

# fp32 end to end on both sides; the two implementations add the same products in
# different orders (fused qkv, SDPA vs eager), which moves logits by ~1e-7; 1e-5 is the
# issue's bound and leaves two orders of magnitude of slack without hiding a real bug
ATOL = 1e-5

HF_CONFIGS = {
    "gqa": dict(n_head=4, n_kv_head=2),
    "mha": dict(n_head=4, n_kv_head=4),
    "mqa-tied": dict(n_head=4, n_kv_head=1, tie_embeddings=True),
    "rope-linear": dict(n_head=4, n_kv_head=2, rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "rope-llama3": dict(n_head=4, n_kv_head=2, rope_base=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16}),
}


def tiny(**kw) -> LlamaConfig:
    base = dict(vocab_size=96, block_size=48, n_layer=2, n_embd=32, n_head=4)
    base.update(kw)
    return LlamaConfig(**base)


def randomise_norms(model):
    """RMSNorm weights start at 1; perturb them so a swapped or missing norm would show."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_(1.0, 0.2)
    return model


# ---------------------------------------------------------------- Hugging Face parity


@pytest.mark.parametrize("kw", HF_CONFIGS.values(), ids=HF_CONFIGS.keys())
@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_logits_equal_hf_llama(kw, attention):
    model = randomise_norms(Llama(tiny(attention=attention, **kw))).eval()
    hf = model.to_hf()
    assert isinstance(hf, transformers.LlamaForCausalLM)
    idx = torch.randint(0, 96, (3, 48))
    with torch.no_grad():
        ours, theirs = model(idx), hf(idx).logits
    assert ours.shape == theirs.shape == (3, 48, 96)
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_from_hf_random_llama_and_back():
    cfg = transformers.LlamaConfig(vocab_size=80, hidden_size=48, intermediate_size=96,
                                   num_hidden_layers=2, num_attention_heads=6,
                                   num_key_value_heads=2, max_position_embeddings=40)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.normal_(1, 0.2)
    model = Llama.from_hf(hf).eval()
    assert (model.config.n_head, model.config.n_kv_head, model.config.head_dim) == (6, 2, 8)
    idx = torch.randint(0, 80, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, atol=ATOL, rtol=0)
    back = model.to_hf().state_dict()
    for name, tensor in hf.state_dict().items():
        assert torch.equal(back[name], tensor), name


def test_greedy_generation_equals_hf_generate():
    model = randomise_norms(Llama(tiny(n_kv_head=2))).eval()
    hf = model.to_hf()
    idx = torch.randint(0, 96, (2, 6))
    ours = model.generate(idx, 20, temperature=0)
    theirs = hf.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=20,
                         min_new_tokens=20, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_to_hf_refuses_what_llama_cannot_express():
    for kw in (dict(qk_norm=True), dict(logit_softcap=15.0), dict(mlp="relu2")):
        with pytest.raises(ValueError, match="cannot express"):
            Llama(tiny(**kw)).to_hf()


# ---------------------------------------------------------------- RoPE


def test_rope_scores_depend_only_on_relative_position():
    """q_m . k_n after rotation is a function of m - n: shift both by s, the score stays."""
    hd, T = 16, 40
    inv = rope_inv_freq(hd, 10000.0)
    angles = torch.outer(torch.arange(T).float(), inv)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    q, k = torch.randn(hd), torch.randn(hd)

    def score(m, n):
        return apply_rope(q, cos[m], sin[m]) @ apply_rope(k, cos[n], sin[n])

    for m, n, s in [(5, 2, 7), (10, 10, 20), (3, 9, 30), (0, 4, 11)]:
        assert math.isclose(score(m, n), score(m + s, n + s), rel_tol=1e-4, abs_tol=1e-5)
    assert not math.isclose(score(5, 2), score(5, 3), rel_tol=1e-3)  # but it does see m - n
    # a rotation keeps lengths
    torch.testing.assert_close(apply_rope(q, cos[13], sin[13]).norm(), q.norm())


def test_interleaved_layout_permutation_matches_metas_rotation():
    """Meta rotates pairs (2i, 2i+1) as complex numbers; permuting the projection rows
    with ``interleaved_to_half`` gives the same attention scores under our rotate-half RoPE."""
    H, hd, C, T = 2, 8, 12, 6
    w = torch.randn(H * hd, C)
    x = torch.randn(T, C)
    inv = rope_inv_freq(hd, 10000.0)
    angles = torch.outer(torch.arange(T).float(), inv)  # (T, hd/2)
    # Meta: view channel pairs as complex numbers and multiply by e^{i angle}
    qm = (x @ w.T).view(T, H, hd // 2, 2)
    qm = torch.view_as_real(torch.view_as_complex(qm.contiguous()) *
                            torch.polar(torch.ones_like(angles), angles)[:, None]).reshape(T, H, hd)
    # ours: permuted rows, rotate-half
    cos = torch.cat([angles, angles], -1).cos()[:, None]
    sin = torch.cat([angles, angles], -1).sin()[:, None]
    qh = apply_rope((x @ interleaved_to_half(w, H).T).view(T, H, hd), cos, sin)
    scores_meta = torch.einsum("thd,shd->hts", qm, qm)
    scores_ours = torch.einsum("thd,shd->hts", qh, qh)
    torch.testing.assert_close(scores_ours, scores_meta, atol=1e-5, rtol=1e-5)
    assert torch.equal(half_to_interleaved(interleaved_to_half(w, H), H), w)


# ---------------------------------------------------------------- KV cache

NANOCHAT_FLAVOUR = dict(n_head=4, n_kv_head=2, qk_norm=True, mlp="relu2", logit_softcap=15.0)


@pytest.mark.parametrize("kw", [dict(n_kv_head=2), NANOCHAT_FLAVOUR], ids=["llama", "nanochat"])
def test_cached_logits_equal_full_forward(kw):
    model = randomise_norms(Llama(tiny(**kw))).eval()
    idx = torch.randint(0, 96, (2, 30))
    with torch.no_grad():
        full = model(idx)  # (B, T, V)
        cache = KVCache.for_model(model, 2, 30)
        parts = [model(idx[:, :12], cache=cache)]  # prefill 12
        for t in range(12, 30):  # then one token at a time
            parts.append(model(idx[:, t:t + 1], cache=cache))
    assert cache.pos == 30
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=ATOL, rtol=0)


@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.0, seed=3),
                                      dict(temperature=0.8, top_k=10, top_p=0.9, seed=1)])
def test_generate_with_cache_equals_without(sampling):
    model = Llama(tiny(**NANOCHAT_FLAVOUR))
    idx = torch.randint(0, 96, (3, 5))
    with_cache = model.generate(idx, 25, use_cache=True, **sampling)
    without = model.generate(idx, 25, use_cache=False, **sampling)
    assert with_cache.shape == (3, 30)
    assert torch.equal(with_cache, without)


def test_generation_past_block_size_falls_back_to_the_window():
    model = Llama(tiny(block_size=16))
    idx = torch.randint(0, 96, (1, 10))
    out = model.generate(idx, 12, temperature=0)  # 22 > 16: sliding window, no cache
    assert out.shape == (1, 22) and torch.equal(out[:, :10], idx)


def test_left_padding_gives_each_row_its_unpadded_logits():
    model = randomise_norms(Llama(tiny(n_kv_head=2))).eval()
    rows = [torch.randint(0, 96, (n,)) for n in (7, 12, 3)]
    L = 12
    pad = torch.tensor([L - len(r) for r in rows])
    batch = torch.stack([torch.cat([torch.zeros(L - len(r), dtype=torch.long), r]) for r in rows])
    with torch.no_grad():
        padded = model(batch, pad=pad)
        cache = KVCache.for_model(model, 3, L + 1, pad=pad)
        model(batch, cache=cache)
        step = model(torch.tensor([[5], [6], [7]]), cache=cache)[:, -1]
        for b, r in enumerate(rows):
            alone = model(r[None])[0]
            torch.testing.assert_close(padded[b, pad[b]:], alone, atol=ATOL, rtol=0)
            ext = model(torch.cat([r, torch.tensor([5 + b])])[None])[0, -1]
            torch.testing.assert_close(step[b], ext, atol=ATOL, rtol=0)


DECODE_CONFIGS = {
    "gqa-sdpa": dict(n_kv_head=2),
    "mha-explicit": dict(n_kv_head=4, attention="explicit"),
    "nanochat": NANOCHAT_FLAVOUR,
    "mqa-tied": dict(n_kv_head=1, tie_embeddings=True),
}


@pytest.mark.parametrize("kw", [dict(attn_scale=False), dict(norm_position="post")],
                         ids=["no-scale", "post-norm"])
def test_decode_step_honours_week01s_switches(kw):
    """week01's experiment switches, inherited by LlamaConfig: ``step`` gives the forward's
    logits (without a 1/sqrt(d) scale the lean path cannot be used: it falls back)."""
    model = randomise_norms(Llama(tiny(n_kv_head=2, **kw))).eval()
    idx = torch.randint(0, 96, (3, 8))
    lean, general = (KVCache.for_model(model, 3, 20) for _ in range(2))
    with torch.no_grad():
        model(idx, cache=lean)
        model(idx, cache=general)
        for _ in range(4):
            tok = torch.randint(0, 96, (3, 1))
            torch.testing.assert_close(model.step(tok, lean), model(tok, cache=general)[:, -1],
                                       atol=ATOL, rtol=0)


def test_hf_refuses_week01s_experiment_switches():
    for kw in (dict(attn_scale=False), dict(causal=False), dict(norm_position="post")):
        with pytest.raises(ValueError, match=f"cannot express {next(iter(kw))}="):
            Llama(tiny(n_kv_head=2, **kw)).to_hf()


@pytest.mark.parametrize("packed", [False, True], ids=["views", "packed"])
@pytest.mark.parametrize("kw", DECODE_CONFIGS.values(), ids=DECODE_CONFIGS.keys())
def test_decode_step_equals_the_general_forward(kw, packed):
    """``step`` (each module's lean one-token path) gives ``run``'s logits and cache, with
    and without left padding and with the (in, out) weight copies."""
    model = randomise_norms(Llama(tiny(**kw))).eval()
    if packed:
        assert model.decode_weights()
    else:
        model.release_decode_weights()
    for pad in (None, torch.tensor([0, 3, 5])):
        idx = torch.randint(0, 96, (3, 8))
        lean = KVCache.for_model(model, 3, 20, pad=pad)
        general = KVCache.for_model(model, 3, 20, pad=pad)
        with torch.no_grad():
            model(idx, cache=lean)
            model(idx, cache=general)
            for _ in range(6):
                tok = torch.randint(0, 96, (3, 1))
                got = model.step(tok, lean)  # (B, V)
                want = model(tok, cache=general)[:, -1]
                torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        assert lean.pos == general.pos == 14
        torch.testing.assert_close(lean.k, general.k, atol=ATOL, rtol=0)
        torch.testing.assert_close(lean.v, general.v, atol=ATOL, rtol=0)


def test_decode_weights_are_row_major_copies_that_leave_the_model_alone():
    model = Llama(tiny(n_kv_head=2))
    keys = set(model.state_dict())
    weights = model.decode_weights()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(weights) == len(linears) == 4 * 2 + 1
    for m in linears:
        w_t = weights[id(m)]
        assert w_t.is_contiguous() and torch.equal(w_t, m.weight.t())
        assert w_t.data_ptr() != m.weight.data_ptr() and not w_t.requires_grad
    assert set(model.state_dict()) == keys  # the copies are no part of the model's state


def test_decode_weights_are_kept_until_a_weight_changes():
    model = Llama(tiny(n_kv_head=2))
    qkv, fc = model.blocks[0].attn.qkv, model.blocks[1].mlp.fc
    first = model.decode_weights()
    again = model.decode_weights()
    assert all(again[k] is first[k] for k in first)  # reused, not copied again
    with torch.no_grad():
        qkv.weight.mul_(2.0)  # an in-place update (what an optimizer step does)
    after = model.decode_weights()
    assert after[id(qkv)] is not first[id(qkv)] and torch.equal(after[id(qkv)], qkv.weight.t())
    assert after[id(model.lm_head)] is first[id(model.lm_head)]  # untouched: kept
    model.load_state_dict({**model.state_dict(), "blocks.1.mlp.fc.weight": fc.weight * 3})
    after = model.decode_weights()  # loading copies into every parameter: all made again
    assert after[id(fc)] is not first[id(fc)] and torch.equal(after[id(fc)], fc.weight.t())
    model.release_decode_weights()
    assert model.decode_weights()[id(qkv)] is not after[id(qkv)]
    model.decode_copy_limit = 0  # a model too large to copy decodes from views
    assert model.decode_weights() == {}


def test_forward_hooks_on_linear_layers_run_in_the_decode_step():
    """The lean step multiplies plain layers itself; a layer with a forward hook (week10's
    adapter bank adds its LoRA output that way) is called as a module, so the cached
    decode step still equals the full forward with the hook in place."""
    torch.manual_seed(0)
    model = Llama(tiny(n_kv_head=2)).eval()
    bump = {}
    handles = [m.register_forward_hook(lambda mod, inp, out: out + bump.get(id(mod), 0.0))
               for m in (model.blocks[0].attn.qkv, model.blocks[1].mlp.proj)]
    bump.update({id(model.blocks[0].attn.qkv): 0.3, id(model.blocks[1].mlp.proj): -0.2})
    idx = torch.randint(0, model.config.vocab_size, (2, 9))
    with torch.no_grad():
        full = model(idx)[:, -1]
        cache = model.new_cache(2, 16)
        model.run(idx[:, :-1], cache)
        stepped = model.step(idx[:, -1:], cache)
        for h in handles:
            h.remove()
        plain = model(idx)[:, -1]
    assert torch.allclose(stepped, full, atol=1e-5)
    assert not torch.allclose(plain, full, atol=1e-3)  # the hooks did change the logits


def test_step_takes_the_general_path_for_other_attention():
    """A subclass that overrides forward but not step (week08's MLA, say) must not be run by
    the lean path: its forward is called."""
    from week04_modern_arch_tools.model import LlamaAttention

    class Traced(LlamaAttention):
        calls = 0

        def forward(self, *args, **kwargs):
            Traced.calls += 1
            return super().forward(*args, **kwargs)

    model = Llama(tiny(n_kv_head=2)).eval()
    for i, block in enumerate(model.blocks):
        old = block.attn
        block.attn = Traced(model.config, i)
        block.attn.load_state_dict(old.state_dict())
    cache = KVCache.for_model(model, 1, 10)
    with torch.no_grad():
        model(torch.randint(0, 96, (1, 4)), cache=cache)
        Traced.calls = 0
        model.step(torch.randint(0, 96, (1, 1)), cache)
    assert Traced.calls == 2  # one per block: the module was called, not bypassed


def test_cache_checks_its_capacity_and_batch():
    model = Llama(tiny())
    cache = KVCache.for_model(model, 2, 8)
    model(torch.zeros(2, 6, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="does not fit|do not fit"):
        model(torch.zeros(2, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="batch size"):
        model(torch.zeros(3, 1, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="max_len"):
        KVCache.for_model(model, 1, 1000)


def test_gqa_shrinks_the_cache_by_the_group_size():
    mha, gqa = tiny(n_head=4, n_kv_head=4), tiny(n_head=4, n_kv_head=1)
    assert mha.kv_cache_bytes(2, 40) == 4 * gqa.kv_cache_bytes(2, 40)
    c = KVCache.for_model(Llama(gqa), 2, 40)
    assert c.nbytes() == gqa.kv_cache_bytes(2, 40, bytes_per_value=4)


# ---------------------------------------------------------------- config and presets


@pytest.mark.parametrize("name", ["test", "tiny"])
def test_param_count_formula_matches_the_model(name):
    cfg = LlamaConfig.preset(name)
    assert Llama(cfg).num_params() == cfg.num_params()
    for kw in (dict(tie_embeddings=True), dict(mlp="swiglu", intermediate_size=96),
               dict(qk_norm=True, n_kv_head=1)):
        c = LlamaConfig.preset(name, **kw)
        assert Llama(c).num_params() == c.num_params()


def test_depth_family_sizes():
    assert LLAMA_PRESETS["d20"].n_embd == 64 * 20
    assert 540e6 < LLAMA_PRESETS["d20"].num_params() < 580e6  # nanochat's d20: ~561M
    assert 1.0e9 < LLAMA_PRESETS["1b"].num_params() < 1.3e9
    assert 1.2e9 < LLAMA_PRESETS["llama3.2-1b"].num_params() < 1.25e9  # Meta reports 1.24B
    assert LLAMA_PRESETS["tiny"].num_params() < 1e6


@pytest.mark.parametrize("kw, match", [
    (dict(n_kv_head=3), "n_kv_head"), (dict(mlp="gelu"), "mlp"), (dict(bias=True), "bias"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 2}), "rope_scaling"),
    (dict(logit_softcap=-1.0), "softcap"), (dict(n_embd=36, n_head=4), "even")])
def test_config_errors_say_what_is_valid(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_loss_ignores_masked_targets():
    model = Llama(tiny())
    idx = torch.randint(0, 96, (2, 10))
    targets = torch.randint(0, 96, (2, 10))
    targets[:, :4] = -1
    logits = model(idx)
    expected = torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, 96),
                                                 targets[:, 4:].reshape(-1))
    torch.testing.assert_close(model.loss(idx, targets), expected)
