"""Our MLA + MoE model against Hugging Face's ``DeepseekV3ForCausalLM``, built from the same
random weights (no download): the same logits both ways of the conversion, with and without
the query latent, MoE layers (sigmoid routing over groups, a selection bias, shared experts)
or all dense, YaRN, and DeepSeek's interleaved rotary layout or the half layout.

Tolerance: 1e-5 in float32, logits of order 1 from weights of std 1/sqrt(fan_in) (large
enough that a wrong permutation or scale shows at 1e-2 or more, see the negative control);
the two sides run the same operations in different groupings, about 1e-7 apart.
"""

import pytest
import torch

pytest.importorskip("transformers")
from transformers import DeepseekV3ForCausalLM  # noqa: E402

from week08_sota.config import SotaConfig  # noqa: E402
from week08_sota.hf import config_from_hf, hf_config, sota_from_hf, sota_to_hf  # noqa: E402
from week08_sota.mla import LatentRotary, softmax_scale  # noqa: E402
from week08_sota.model import SotaModel  # noqa: E402

pytestmark = pytest.mark.core

ATOL = 1e-5
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8,
        "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 1.0}


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
    base = dict(n_layer=3, gating="sigmoid", n_group=2, topk_group=1, routed_scaling_factor=2.5,
                first_k_dense_replace=1)
    base.update(kw)
    return SotaConfig.preset("test", **base)


def random_hf(config: SotaConfig, rope_interleave: bool = True) -> DeepseekV3ForCausalLM:
    """A Hugging Face model with every weight random at a scale where mistakes show."""
    hf = DeepseekV3ForCausalLM(hf_config(config, rope_interleave=rope_interleave)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif p.dim() >= 2:
                p.normal_(0, p.size(-1) ** -0.5)
        for layer in hf.model.layers:
            gate = getattr(layer.mlp, "gate", None)
            if gate is not None:  # the selection-only bias must travel too
                gate.e_score_correction_bias.uniform_(-0.1, 0.1)
    return hf


VARIANTS = {
    "q-latent-moe": dict(),
    "q-plain-moe": dict(q_lora_rank=0),
    "dense": dict(moe=False),
    "yarn": dict(rope_scaling=YARN),
    "tied-no-topk-norm": dict(tie_embeddings=True, norm_topk_prob=False, n_group=1),
}


CASES = [(kw, True) for kw in VARIANTS.values()] + [(VARIANTS["yarn"], False)]


@pytest.mark.parametrize("kw,interleave", CASES,
                         ids=[f"{k}-interleaved" for k in VARIANTS] + ["yarn-half"])
def test_logits_equal_hugging_face_both_ways(kw, interleave):
    """DeepSeek's interleaved rotary layout for every variant, the half layout once."""
    config = cfg(**kw)
    hf = random_hf(config, interleave)
    idx = torch.randint(0, 64, (2, 14))  # 14 > 8: YaRN's original context is exceeded
    ours = sota_from_hf(hf)
    if config.moe:
        assert ours.config == config
    else:  # all dense: first_k_dense_replace means nothing (Hugging Face's is n_layer)
        assert not ours.config.moe and ours.config.n_layer == config.n_layer
    with torch.no_grad():
        want = hf(idx).logits
        torch.testing.assert_close(ours(idx), want, atol=ATOL, rtol=0)
        back = sota_to_hf(ours, rope_interleave=interleave)
        torch.testing.assert_close(back(idx).logits, want, atol=ATOL, rtol=0)
        # our decode (absorbed, latent cache) gives Hugging Face's last logits too
        cache = ours.new_cache(2, 14)
        ours(idx[:, :10], cache=cache)
        for t in range(10, 14):
            torch.testing.assert_close(ours.step(idx[:, t:t + 1], cache), want[:, t],
                                       atol=ATOL, rtol=0)


def test_a_random_model_of_ours_converts_to_hugging_face():
    model = SotaModel(cfg())
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, p.size(-1) ** -0.5)
    idx = torch.randint(0, 64, (3, 9))
    with torch.no_grad():
        torch.testing.assert_close(sota_to_hf(model).eval()(idx).logits, model.eval()(idx),
                                   atol=ATOL, rtol=0)


def test_the_wrong_rotary_layout_is_caught():
    """Negative control: reading interleaved weights as half-layout ones changes the logits."""
    hf = random_hf(cfg(), rope_interleave=True)
    idx = torch.randint(0, 64, (1, 12))
    hf.config.rope_interleave = False
    wrong = sota_from_hf(hf)
    hf.config.rope_interleave = True
    with torch.no_grad():
        assert (wrong(idx) - hf(idx).logits).abs().max() > 1e-2


def test_yarn_tables_and_scale_equal_hugging_face():
    config = cfg(rope_scaling=YARN)
    hf = random_hf(config)
    ours = LatentRotary(config)
    pos = torch.arange(config.block_size)[None]
    cos, sin = hf.model.rotary_emb(torch.zeros(1, dtype=torch.float32), pos)
    torch.testing.assert_close(ours.cos, cos[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.sin, sin[0], atol=1e-6, rtol=0)
    assert softmax_scale(config) == pytest.approx(hf.model.layers[0].self_attn.scaling, rel=1e-7)
    assert hf.model.rotary_emb.attention_scaling != 1.0  # mscale 0.707 vs 1.0: a real factor


def test_configs_hugging_face_cannot_express_raise():
    with pytest.raises(ValueError, match="gating='softmax'"):
        hf_config(cfg(gating="softmax", n_group=1))
    with pytest.raises(ValueError, match="attn_type='gqa'"):
        hf_config(cfg(attn_type="gqa", n_kv_head=2))
    with pytest.raises(ValueError, match="capacity_factor"):
        hf_config(cfg(capacity_factor=1.0))
    hf_cfg = hf_config(cfg())
    hf_cfg.hidden_act = "gelu"
    with pytest.raises(ValueError, match="hidden_act='gelu'"):
        config_from_hf(hf_cfg)


def test_greedy_generation_equals_hugging_face_generate():
    """Our decoding loop over the latent cache (absorbed steps) picks Hugging Face's tokens
    (``generate`` with its own cache of the same latents), MoE layers included."""
    config = cfg()
    hf = random_hf(config)
    ours = sota_from_hf(hf)
    idx = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        want = hf.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=8,
                           min_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(idx, 8, temperature=0), want)
