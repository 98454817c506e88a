"""Our GPT against Hugging Face's GPT2LMHeadModel holding the same random weights.

Tolerance: both models run in float32 (unit roundoff 6e-8). They do the same
arithmetic in a different order (nn.Linear's x @ W^T vs Conv1D's addmm with
the transposed matrix, SDPA's fused kernel vs matmul + softmax), which on these
tiny models moves logits of magnitude ~1 by about 1e-7 to 1e-6. The issue's bar
of 1e-5 leaves a 10x margin over that. Gradients are compared relative to the
largest entry of each gradient (rtol 1e-4, atol 1e-6): backward sums over the
batch and sequence, so its rounding error is a few times larger than forward's.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
from transformers import GPT2LMHeadModel  # noqa: E402

from week01_transformer import GPT, GPTConfig  # noqa: E402
from week01_transformer.hf import hf_config, name_map  # noqa: E402

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

LOGIT_TOL = 1e-5

CONFIGS = [
    GPTConfig(vocab_size=37, block_size=8, n_layer=1, n_head=1, n_embd=16),
    GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32),
    GPTConfig(vocab_size=101, block_size=24, n_layer=3, n_head=4, n_embd=48),
]
IDS = ["L1-H1-C16", "L2-H2-C32", "L3-H4-C48"]


def random_hf(config: GPTConfig, randomize, seed: int, attn: str = "eager") -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return randomize(GPT2LMHeadModel(hf_config(config, attn_implementation=attn)), seed).eval()


def random_idx(config: GPTConfig, B: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (B, config.block_size), generator=g)


# ---------------------------------------------------------------- logits


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
@pytest.mark.parametrize("hf_attn", ["eager", "sdpa"])
@pytest.mark.parametrize("our_attn", ["explicit", "sdpa"])
def test_from_hf_logits_match(config, hf_attn, our_attn, randomize):
    """Hugging Face -> ours: identical logits on random tokens (every attention path pair)."""
    hf = random_hf(config, randomize, seed=1, attn=hf_attn)
    ours = GPT.from_hf(hf, attention=our_attn).eval()
    idx = random_idx(config)
    with torch.no_grad():
        want = hf(idx).logits
        got = ours(idx)
    assert got.shape == want.shape == (3, config.block_size, config.vocab_size)
    assert (got - want).abs().max().item() < LOGIT_TOL


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_to_hf_logits_match(config, randomize):
    """Ours -> Hugging Face: identical logits, also for a prefix shorter than block_size."""
    torch.manual_seed(0)
    ours = randomize(GPT(config), seed=2).eval()
    hf = ours.to_hf().eval()
    for T in (config.block_size, 3):
        idx = random_idx(config)[:, :T]
        with torch.no_grad():
            assert (ours(idx) - hf(idx).logits).abs().max().item() < LOGIT_TOL


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_round_trip_is_exact(config, randomize):
    """from_hf(to_hf(m)) holds exactly m's weights (transposes undone, tie kept)."""
    torch.manual_seed(0)
    ours = randomize(GPT(config), seed=3)
    back = GPT.from_hf(ours.to_hf())
    a, b = ours.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert back.lm_head.weight is back.tok_emb.weight


@pytest.mark.parametrize("config", CONFIGS[1:], ids=IDS[1:])
def test_without_bias(config, randomize):
    """bias=False, checked two ways, since Hugging Face's GPT-2 always has biases.

    1. ours(bias=False) -> to_hf: HF gets all-zero biases, which computes the
       same function, so the logits must agree.
    2. an HF model whose biases we zeroed -> from_hf(bias=False): agrees too;
       and an HF model with non-zero biases refuses to load as bias=False,
       since dropping them would silently change the function.
    """
    cfg = GPTConfig(**{**config.to_dict(), "bias": False})
    torch.manual_seed(0)
    ours = randomize(GPT(cfg), seed=4).eval()
    assert not any(n.endswith("bias") for n, _ in ours.named_parameters())
    hf = ours.to_hf().eval()
    idx = random_idx(cfg)
    with torch.no_grad():
        assert (ours(idx) - hf(idx).logits).abs().max().item() < LOGIT_TOL

    hf2 = random_hf(config, randomize, seed=5)
    with torch.no_grad():
        for name, p in hf2.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    ours2 = GPT.from_hf(hf2, bias=False).eval()
    with torch.no_grad():
        assert (ours2(idx) - hf2(idx).logits).abs().max().item() < LOGIT_TOL

    hf3 = random_hf(config, randomize, seed=6)
    with pytest.raises(ValueError, match="non-zero"):
        GPT.from_hf(hf3, bias=False)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
@pytest.mark.parametrize("our_attn", ["explicit", "sdpa"])
def test_gradients_match(config, our_attn, randomize):
    """Same loss on the same weights gives the same gradient for every weight."""
    hf = random_hf(config, randomize, seed=7)
    ours = GPT.from_hf(hf, attention=our_attn)
    idx = random_idx(config, seed=1)
    targets = random_idx(config, seed=2)

    hf_logits = hf(idx).logits
    F.cross_entropy(hf_logits.flatten(0, 1), targets.flatten()).backward()
    ours.loss(idx, targets).backward()

    theirs = dict(hf.named_parameters())
    mine = dict(ours.named_parameters())
    for my_name, hf_name, transposed in name_map(config.n_layer):
        g_hf = theirs[hf_name].grad
        g_hf = g_hf.t() if transposed else g_hf
        g_me = mine[my_name].grad
        scale = g_hf.abs().max().item()
        torch.testing.assert_close(g_me, g_hf, rtol=1e-4, atol=1e-6 + 1e-4 * scale,
                                   msg=lambda m, n=my_name: f"{n}: {m}")


def test_loss_matches_hf_shifted_loss(randomize):
    """HF's labels= loss (shifts internally) equals ours on (idx[:, :-1], idx[:, 1:])."""
    config = CONFIGS[1]
    hf = random_hf(config, randomize, seed=8)
    ours = GPT.from_hf(hf).eval()
    idx = random_idx(config)
    with torch.no_grad():
        want = hf(idx, labels=idx).loss
        got = ours.loss(idx[:, :-1], idx[:, 1:])
    assert abs(got.item() - want.item()) < 1e-5


# ---------------------------------------------------------------- sizes


def test_gpt2_preset_has_124m_parameters():
    """The gpt2 preset: 124,439,808 parameters with the tied head, as in HF's GPT-2."""
    with torch.device("meta"):  # shapes only: no 500 MB of memory, no init time
        ours = GPT(GPTConfig.preset("gpt2"))
        hf = GPT2LMHeadModel(hf_config(GPTConfig.preset("gpt2")))
    assert ours.num_params() == 124_439_808
    assert sum(p.numel() for p in hf.parameters()) == 124_439_808
    # non-embedding count: 124,439,808 - 50257*768 - 1024*768
    assert ours.num_params(non_embedding=True) == 124_439_808 - 50257 * 768 - 1024 * 768


def test_from_hf_rejects_what_we_cannot_express():
    cfg = hf_config(CONFIGS[0])
    cfg.activation_function = "relu"
    cfg.n_inner = 3 * cfg.n_embd
    with pytest.raises(ValueError, match="activation_function.*n_inner|n_inner.*activation"):
        GPT.from_hf(GPT2LMHeadModel(cfg))
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        GPT.from_hf(object())
