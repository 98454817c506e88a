"""The parts the baseline trains that Hugging Face's Llama lacks, against HF models that have them.

- **QK-norm**: ``Qwen3ForCausalLM`` is our ``Llama(qk_norm=True)``: per-head RMSNorm
  (learned weight over ``head_dim``) on q and k before RoPE, SwiGLU, GQA, no biases.
  Same weights -> same logits, and the same greedy tokens as ``generate``.
- **ReLU^2**: Nemotron's MLP with ``hidden_act="relu2"`` (``ACT2FN["relu2"]``,
  ``relu(x)^2``, not gated) is our ``ReLU2MLP``; a Qwen3 whose MLPs are swapped
  for Nemotron's is our nanochat flavour (QK-norm + ReLU^2), logits equal.
- **Local and global layers**: Qwen3's ``layer_types`` (sliding-window layers beside
  full ones) is our ``sliding_window`` + ``window_pattern``, a per-layer choice read
  through ``LlamaConfig.layer_config``: logits and cached greedy generation equal.
- **Logit soft-cap**: Gemma 2's ``final_logit_softcapping``. Gemma 2 differs
  elsewhere (embeddings times sqrt(C), ``(1 + w)`` norms, GeGLU, four norms a block,
  attention-score capping), so no Llama equals it; instead our cap runs on Gemma 2's
  own uncapped logits and must give Gemma 2's capped ones.

Weights are copied by the helpers below (Hugging Face name -> ours, using
``hf.name_map`` for the names Llama shares); the README's "Where ours differs
from Hugging Face" says what stays different on purpose.
"""

import pytest
import torch
import torch.nn as nn

from week04_modern_arch_tools import Llama, LlamaConfig
from week04_modern_arch_tools.hf import name_map

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")

transformers = pytest.importorskip("transformers")

# fp32 on both sides, the same products summed in other orders (fused qkv and gate/up
# matmuls, SDPA vs eager): ~1e-7 on logits of size ~1; 1e-5 is week04's bound for HF Llama
ATOL = 1e-5


def randomise(model, std=0.05):
    """HF initialises norms to 1 (and Gemma's to 0): perturb every tensor so a norm that is
    skipped, swapped between q and k, or read from the wrong layer shows in the logits."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.2 * noise if p.dim() == 1 else std * noise)
    return model.eval()


# ---------------------------------------------------------------- Qwen3: QK-norm


def qwen3(n_kv_head=2, tie=False, **extra):
    import inspect
    rope = 1e6  # Qwen3's own base, so that a rope_base that is not copied shows
    kw = dict(rope_parameters={"rope_type": "default", "rope_theta": rope}) if "rope_parameters" \
        in inspect.signature(transformers.Qwen3Config.__init__).parameters else dict(rope_theta=rope)
    cfg = transformers.Qwen3Config(
        vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=n_kv_head, head_dim=16,
        max_position_embeddings=48, rms_norm_eps=1e-6, tie_word_embeddings=tie,
        attention_bias=False, attn_implementation="eager",
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
        **{**kw, "use_sliding_window": False, **extra})
    return randomise(transformers.Qwen3ForCausalLM(cfg))


def llama_config_of(hf_cfg, **kw) -> LlamaConfig:
    rope = getattr(hf_cfg, "rope_parameters", None) or {}           # transformers >= 5
    base = float(rope.get("rope_theta", getattr(hf_cfg, "rope_theta", 10000.0)))
    assert hf_cfg.head_dim * hf_cfg.num_attention_heads == hf_cfg.hidden_size
    return LlamaConfig(vocab_size=hf_cfg.vocab_size, block_size=hf_cfg.max_position_embeddings,
                       n_layer=hf_cfg.num_hidden_layers, n_head=hf_cfg.num_attention_heads,
                       n_kv_head=hf_cfg.num_key_value_heads, n_embd=hf_cfg.hidden_size,
                       intermediate_size=hf_cfg.intermediate_size, rope_base=base,
                       norm_eps=hf_cfg.rms_norm_eps,
                       tie_embeddings=bool(hf_cfg.tie_word_embeddings), **kw)


def llama_from_qwen3(hf, mlp="swiglu", attention="sdpa", **kw) -> Llama:
    """Our Llama(qk_norm=True) with a Qwen3ForCausalLM's weights (also with Nemotron MLPs)."""
    model = Llama(llama_config_of(hf.config, qk_norm=True, mlp=mlp, attention=attention, **kw))
    theirs, ours = hf.state_dict(), model.state_dict()
    with torch.no_grad():
        for a, b in name_map(model.config.n_layer):
            if a == "lm_head.weight" and model.config.tie_embeddings:
                continue
            if b.endswith("mlp.down_proj.weight") or a.endswith("mlp.proj.weight"):
                continue  # the MLP is copied below, by kind
            ours[a].copy_(theirs[b])
        for i in range(model.config.n_layer):
            att, mlp_ = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
            ours[f"blocks.{i}.attn.qkv.weight"].copy_(torch.cat(
                [theirs[att + "q_proj.weight"], theirs[att + "k_proj.weight"],
                 theirs[att + "v_proj.weight"]]))
            ours[f"blocks.{i}.attn.q_norm.weight"].copy_(theirs[att + "q_norm.weight"])
            ours[f"blocks.{i}.attn.k_norm.weight"].copy_(theirs[att + "k_norm.weight"])
            if mlp == "swiglu":
                fc = torch.cat([theirs[mlp_ + "gate_proj.weight"], theirs[mlp_ + "up_proj.weight"]])
            else:
                fc = theirs[mlp_ + "up_proj.weight"]
            ours[f"blocks.{i}.mlp.fc.weight"].copy_(fc)
            ours[f"blocks.{i}.mlp.proj.weight"].copy_(theirs[mlp_ + "down_proj.weight"])
    return model.eval()


@pytest.mark.parametrize("n_kv_head,tie", [(2, False), (4, False), (1, True)],
                         ids=["gqa", "mha", "mqa-tied"])
@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_qk_norm_logits_equal_qwen3(n_kv_head, tie, attention):
    hf = qwen3(n_kv_head, tie)
    model = llama_from_qwen3(hf, attention=attention)
    idx = torch.randint(0, 96, (3, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(idx), hf(idx).logits
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    # the norms matter: the same model without QK-norm is far from Qwen3
    for block in model.blocks:
        block.attn.q_norm.weight.data.fill_(1.0)
    with torch.no_grad():
        assert (model(idx) - theirs).abs().max() > 100 * ATOL


def test_qk_norm_greedy_generation_equals_qwen3_generate():
    """Our KV-cache decode step (q/k norms inside) against HF's generate with its cache."""
    hf = qwen3()
    model = llama_from_qwen3(hf)
    idx = torch.randint(0, 96, (2, 6), generator=torch.Generator().manual_seed(2))
    ours = model.generate(idx, 20, temperature=0)
    theirs = hf.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=20,
                         min_new_tokens=20, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)


# ---------------------------------------------------------------- Qwen3: local and global layers


WINDOW = 8  # far shorter than the 40-token sequences, so most keys fall outside it


@pytest.fixture(scope="module")
def windowed():
    """Qwen3 with per-layer attention kinds (``layer_types``), and our Llama with the same
    choice from its config (``sliding_window`` + ``window_pattern``, read per layer)."""
    hf = qwen3(use_sliding_window=True, sliding_window=WINDOW,
               layer_types=["sliding_attention", "full_attention"])
    model = llama_from_qwen3(hf, sliding_window=WINDOW, window_pattern="SL")
    assert [b.attn.window for b in model.blocks] == [WINDOW, None]
    return hf, model


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_local_and_global_layers_equal_qwen3_layer_types(windowed, attention):
    hf, model = windowed
    model.set_attention(attention)
    idx = torch.randint(0, 96, (2, 40), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours, theirs = model(idx), hf(idx).logits
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
        # the window matters: the same weights with every layer global are far from Qwen3's
        full = llama_from_qwen3(hf)
        assert (full(idx) - theirs).abs().max() > 100 * ATOL
    model.set_attention("sdpa")


def test_windowed_cached_generation_equals_qwen3_generate(windowed):
    """Past the window, the one-token step masks old keys exactly as HF's cache does."""
    hf, model = windowed
    idx = torch.randint(0, 96, (2, 5), generator=torch.Generator().manual_seed(5))
    ours = model.generate(idx, 30, temperature=0)
    theirs = hf.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=30,
                         min_new_tokens=30, do_sample=False, pad_token_id=0)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours, model.generate(idx, 30, temperature=0, use_cache=False))


def test_window_settings_are_checked():
    base = dict(vocab_size=96, block_size=16, n_layer=2, n_head=4, n_embd=64)
    with pytest.raises(ValueError, match="sliding_window is None"):
        LlamaConfig(**base, window_pattern="SL")
    with pytest.raises(ValueError, match="'S' \\(local\\) and 'L'"):
        LlamaConfig(**base, sliding_window=4, window_pattern="SX")
    with pytest.raises(ValueError, match="positive int"):
        LlamaConfig(**base, sliding_window=0)
    every = LlamaConfig(**base, sliding_window=4)  # no pattern: every layer local (Mistral)
    assert [every.layer_is_local(i) for i in range(2)] == [True, True]
    with pytest.raises(ValueError, match="sliding_window=4"):
        Llama(every).to_hf()


# ---------------------------------------------------------------- Nemotron's MLP: ReLU^2


def nemotron_mlp(n_embd, intermediate):
    from transformers.models.nemotron.modeling_nemotron import NemotronMLP
    cfg = transformers.NemotronConfig(hidden_size=n_embd, intermediate_size=intermediate,
                                      hidden_act="relu2", mlp_bias=False)
    return NemotronMLP(cfg)


def test_relu2_is_hf_relu_squared_and_our_mlp_equals_nemotrons():
    from transformers.activations import ACT2FN
    x = torch.linspace(-3, 3, 61)
    assert torch.equal(ACT2FN["relu2"](x), torch.relu(x) ** 2)   # what "relu2" means to HF
    model = Llama(LlamaConfig(vocab_size=96, block_size=16, n_layer=1, n_head=4, n_embd=64,
                              mlp="relu2", intermediate_size=160))
    ours = model.blocks[0].mlp
    theirs = randomise(nemotron_mlp(64, 160))
    with torch.no_grad():
        ours.fc.weight.copy_(theirs.up_proj.weight)
        ours.proj.weight.copy_(theirs.down_proj.weight)
    h = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        # the same two fp32 matmuls and one elementwise square: ~1e-7 of outputs ~0.1
        torch.testing.assert_close(ours(h), theirs(h), atol=1e-6, rtol=0)


def test_nanochat_flavour_equals_qwen3_with_nemotrons_relu2_mlp():
    """QK-norm and ReLU^2 together (the baseline's architecture minus the cap, which the next
    test covers): a Qwen3 whose MLPs are Nemotron's relu2 MLP, built from HF modules only."""
    hf = qwen3()
    for layer in hf.model.layers:
        layer.mlp = nemotron_mlp(hf.config.hidden_size, hf.config.intermediate_size)
    randomise(hf)
    model = llama_from_qwen3(hf, mlp="relu2")
    idx = torch.randint(0, 96, (2, 48), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- Gemma 2: logit soft-cap


def gemma2(cap):
    cfg = transformers.Gemma2Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=32,
        final_logit_softcapping=cap, attn_implementation="eager",
        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return randomise(transformers.Gemma2ForCausalLM(cfg), std=0.2)


def logits_passthrough(logits: torch.Tensor, cap: float) -> Llama:
    """Our Llama whose uncapped logits for token ids 0..N-1 are the N rows of ``logits`` (N, V):
    every block's output projection is zero (the residual stream stays the embedding), the
    final norm is an identity and the head is the identity matrix, so ``lm_head(ln_f(x))``
    is the embedding row, and all that ``Llama`` does to it after that is its soft-cap."""
    N, V = logits.shape
    model = Llama(LlamaConfig(vocab_size=V, block_size=N, n_layer=1, n_head=4, n_embd=V,
                              logit_softcap=cap))
    with torch.no_grad():
        model.tok_emb.weight.zero_()
        model.tok_emb.weight[:N].copy_(logits)
        model.lm_head.weight.copy_(torch.eye(V))
        for block in model.blocks:
            block.attn.proj.weight.zero_()
            block.mlp.proj.weight.zero_()
    model.ln_f = nn.Identity()
    return model.eval()


@pytest.mark.parametrize("cap", [30.0, 2.0])
def test_logit_softcap_equals_gemma2s_final_logit_softcapping(cap):
    hf = gemma2(cap)
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        capped = hf(idx).logits                               # (B, T, V), Gemma 2's own cap
        hf.config.final_logit_softcapping = None
        raw = hf(idx).logits                                  # the same model, uncapped
    assert not torch.allclose(capped, raw)
    if cap == 2.0:                                            # the saturating part is exercised
        assert raw.abs().max() > 2 * cap and capped.abs().max() < cap
    rows = raw.reshape(-1, raw.size(-1))                      # (B*T, V): token i -> row i
    ids = torch.arange(rows.size(0))[None]                    # (1, B*T)
    with torch.no_grad():
        # without a cap the passthrough hands back Gemma 2's uncapped logits exactly
        assert torch.equal(logits_passthrough(rows, None)(ids)[0], rows)
        ours = logits_passthrough(rows, cap)(ids).reshape(capped.shape)
    # both compute cap * tanh(z / cap) in fp32 (a division, a tanh, a product) on the same
    # numbers: equal up to one rounding of each op, ~1e-7 relative
    torch.testing.assert_close(ours, capped, atol=1e-6, rtol=1e-6)
