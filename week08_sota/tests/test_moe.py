"""The MoE MLP against Hugging Face's MixtralSparseMoeBlock and DeepseekV3MoE, a per-token
loop, hand-computed balance losses, capacity drops and DeepSeek-V3's loss-free bias update."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from week08_sota.config import SotaConfig
from week08_sota.moe import (
    MoE,
    active_param_count,
    active_params,
    balance_bias_hook,
    capacity,
    export_hf_moe,
    load_hf_mixtral,
    load_hf_moe,
    max_violation,
    moe_aux_loss,
    moe_flops_per_token,
    moe_loss_fn,
    train_flops_per_token,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

transformers = pytest.importorskip("transformers")
from transformers import DeepseekV3Config, MixtralConfig  # noqa: E402
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE  # noqa: E402
from transformers.models.mixtral.modeling_mixtral import (  # noqa: E402
    MixtralSparseMoeBlock,
    load_balancing_loss_func,
)

# fp32 on both sides; the same products summed in another order (one index_add_ per expert
# in HF, one over all experts here) differ by ~1e-7; 1e-5 is the bound
ATOL = 1e-5
C, I = 32, 16


def sota(**kw) -> SotaConfig:
    base = dict(n_embd=C, n_head=4, n_kv_head=4, n_layer=2, vocab_size=64, block_size=16,
                n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=I,
                n_shared_experts=0, gating="softmax")
    return SotaConfig(**{**base, **kw})


def randomise(module: nn.Module, std: float = 0.1) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)


def per_token_reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """The layer written the slow, obvious way: each token, each chosen expert, in Python."""
    cfg = moe.config
    rows = x.reshape(-1, x.size(-1))
    out = torch.zeros_like(rows)
    bias = moe.gate.e_score_correction_bias
    for t in range(rows.size(0)):
        logits = rows[t] @ moe.gate.weight.t()
        s = logits.softmax(-1) if cfg.gating == "softmax" else logits.sigmoid()
        choice = (s + bias).tolist()
        n = cfg.n_routed_experts // cfg.n_group
        groups = sorted(range(cfg.n_group), key=lambda g: -sum(sorted(choice[g * n:(g + 1) * n])[-2:]))
        allowed = [e for g in groups[:cfg.topk_group] for e in range(g * n, (g + 1) * n)]
        chosen = sorted(allowed, key=lambda e: -choice[e])[:cfg.num_experts_per_tok]
        w = s[chosen]
        if cfg.norm_topk_prob:
            w = w / w.sum()
        for j, e in enumerate(chosen):
            gate, up = (moe.experts.gate_up_proj[e] @ rows[t]).chunk(2)
            y = moe.experts.down_proj[e] @ (F.silu(gate) * up)
            out[t] += w[j] * cfg.routed_scaling_factor * y
    if moe.shared_experts is not None:
        out = out + moe.shared_experts(rows)
    return out.view_as(x)


def mixtral_pair():
    hf_cfg = MixtralConfig(hidden_size=C, intermediate_size=I, num_local_experts=8,
                           num_experts_per_tok=2)
    hf_cfg._experts_implementation = "eager"
    hf = MixtralSparseMoeBlock(hf_cfg)
    randomise(hf)
    return load_hf_mixtral(MoE(sota()), hf), hf


def deepseek_pair(n_group=4, topk_group=2, norm=True, shared=2, scale=2.5):
    hf_cfg = DeepseekV3Config(hidden_size=C, intermediate_size=64, moe_intermediate_size=I,
                              n_routed_experts=8, num_experts_per_tok=2, n_group=n_group,
                              topk_group=topk_group, n_shared_experts=shared,
                              routed_scaling_factor=scale, norm_topk_prob=norm)
    hf_cfg._experts_implementation = "eager"
    hf = DeepseekV3MoE(hf_cfg)
    randomise(hf)
    hf.gate.e_score_correction_bias.normal_(0.0, 0.3)  # selection-only: must change the choice
    cfg = sota(gating="sigmoid", n_group=n_group, topk_group=topk_group, n_shared_experts=shared,
               routed_scaling_factor=scale, norm_topk_prob=norm)
    return load_hf_moe(MoE(cfg), hf), hf


def assert_same_forward_and_input_grad(ours, hf, x):
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), hf(xb)
    torch.testing.assert_close(ya, yb, atol=ATOL, rtol=0)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, atol=ATOL, rtol=0)


def test_equals_hf_mixtral_sparse_moe_block():
    ours, hf = mixtral_pair()
    assert_same_forward_and_input_grad(ours, hf, torch.randn(3, 7, C))
    torch.testing.assert_close(ours.gate.weight.grad, hf.gate.weight.grad, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.experts.gate_up_proj.grad, hf.experts.gate_up_proj.grad,
                               atol=ATOL, rtol=0)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # HF, n_shared_experts=0
@pytest.mark.parametrize("n_group,topk_group,norm,shared", [
    (4, 2, True, 2), (1, 1, True, 1), (2, 1, False, 0)])
def test_equals_hf_deepseek_v3_moe(n_group, topk_group, norm, shared):
    ours, hf = deepseek_pair(n_group, topk_group, norm, shared)
    x = torch.randn(3, 7, C)
    assert_same_forward_and_input_grad(ours, hf, x)
    torch.testing.assert_close(ours.gate.weight.grad, hf.gate.weight.grad, atol=ATOL, rtol=0)
    back = DeepseekV3MoE(hf.config)  # export into a fresh block: the same function again
    export_hf_moe(ours, back)
    torch.testing.assert_close(back(x), hf(x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("grouped", [False, True], ids=["slices", "grouped"])
@pytest.mark.parametrize("gating,n_group", [("softmax", 1), ("sigmoid", 4)])
def test_dispatch_equals_per_token_loop(gating, n_group, grouped):
    from week08_sota.dispatch import _GROUPED_MM

    if grouped and _GROUPED_MM is None:
        pytest.skip("this torch build has no grouped matmul")
    moe = MoE(sota(gating=gating, n_group=n_group, topk_group=2 if n_group > 1 else 1,
                   n_shared_experts=1, routed_scaling_factor=1.5))
    moe.grouped = grouped
    randomise(moe)
    moe.gate.e_score_correction_bias.normal_(0.0, 0.2)
    x = torch.randn(2, 9, C)
    with torch.no_grad():
        torch.testing.assert_close(moe(x), per_token_reference(moe, x), atol=ATOL, rtol=0)
        torch.testing.assert_close(moe.step(x[:, 0]), per_token_reference(moe, x[:, :1])[:, 0],
                                   atol=ATOL, rtol=0)


def test_gradients_reach_router_and_every_used_expert():
    # k = 2: with k = 1 and renormalised weights every weight is 1 and the router gets no gradient
    moe = MoE(sota(n_routed_experts=16, num_experts_per_tok=2, n_shared_experts=1))
    randomise(moe)
    moe(torch.randn(1, 6, C)).square().sum().backward()
    assert moe.gate.weight.grad.abs().sum() > 0
    used = moe.load > 0
    assert 0 < int(used.sum()) < 16  # 6 tokens x 2 choices, 16 experts: some are idle
    per_expert = moe.experts.gate_up_proj.grad.abs().sum((1, 2))
    assert bool((per_expert[used] > 0).all()) and bool((per_expert[~used] == 0).all())
    assert moe.experts.down_proj.grad.abs().sum((1, 2))[used].min() > 0
    assert moe.shared_experts.fc.weight.grad.abs().sum() > 0


def test_capacity_drops_later_pairs_first_choices_first():
    # 8 experts, k = 2; every token's 1st choice is expert 0 and its 2nd expert 1, so with
    # capacity ceil(1.0 * 6 * 2 / 8) = 2 only tokens 0 and 1 are routed (to both experts)
    cfg = sota(capacity_factor=1.0, n_shared_experts=1)
    moe = MoE(cfg)
    randomise(moe)
    assert capacity(cfg, 6) == 2
    x = torch.randn(1, 6, C)
    with torch.no_grad():
        moe.gate.weight.zero_()
        moe.gate.e_score_correction_bias.copy_(torch.tensor([2.0, 1.0, 0, 0, 0, 0, 0, 0]))
        y = moe(x)
        shared = moe.shared_experts(x)
        full = per_token_reference(moe, x)  # no capacity in the reference
    assert moe.dropped == 8 and moe.load.tolist() == [6, 6, 0, 0, 0, 0, 0, 0]
    torch.testing.assert_close(y[0, :2], full[0, :2], atol=ATOL, rtol=0)
    torch.testing.assert_close(y[0, 2:], shared[0, 2:], atol=ATOL, rtol=0)  # routed part dropped


def test_capacity_keeps_first_choices_over_second_choices():
    # capacity ceil(0.5 * 4 * 2 / 4) = 1 per expert: token 3's 1st choice (expert 1) beats
    # token 0's 2nd choice (expert 1), though token 0 comes first
    cfg = sota(n_routed_experts=4, capacity_factor=0.5, norm_topk_prob=False)
    moe = MoE(cfg)
    randomise(moe)
    with torch.no_grad():
        moe.gate.weight.zero_()
        moe.gate.weight[:, :4] = torch.tensor([[5.0, 0, 0, 0],   # token t's x is e_t * 1
                                               [4.0, 0, 0, 5],
                                               [0, 5.0, 0, 0],
                                               [0, 4.0, 5, 0]])
        x = torch.zeros(1, 4, C)
        x[0, torch.arange(4), torch.arange(4)] = 1.0
        # choices: token 0 -> (0, 1), 1 -> (2, 3), 2 -> (3, 2), 3 -> (1, 0)
        y = moe(x)
        probs = moe.gate(x[0]).softmax(-1)

        def expert(e, t):
            gate, up = (moe.experts.gate_up_proj[e] @ x[0, t]).chunk(2)
            return moe.experts.down_proj[e] @ (F.silu(gate) * up)

    expect = torch.stack([probs[0, 0] * expert(0, 0),                  # 2nd choice (1) dropped
                          probs[1, 2] * expert(2, 1),                  # 2nd choice (3) dropped
                          probs[2, 3] * expert(3, 2),                  # 2nd choice (2) dropped
                          probs[3, 1] * expert(1, 3)])                 # 2nd choice (0) dropped
    assert moe.dropped == 4
    torch.testing.assert_close(y[0], expect, atol=ATOL, rtol=0)


def test_aux_and_z_loss_equal_the_formulas_by_hand():
    # N = 2, k = 1, C = 32 but only two channels used: logits are [1, 0], [0, 2], [3, 0]
    cfg = sota(n_routed_experts=2, num_experts_per_tok=1, aux_loss_alpha=0.01, z_loss_coef=0.1)
    moe = MoE(cfg)
    with torch.no_grad():
        moe.gate.weight.zero_()
        moe.gate.weight[0, 0], moe.gate.weight[1, 1] = 1.0, 1.0
    x = torch.zeros(1, 3, C)
    x[0, 0, 0], x[0, 1, 1], x[0, 2, 0] = 1.0, 2.0, 3.0
    moe(x)
    logits = [(1.0, 0.0), (0.0, 2.0), (3.0, 0.0)]
    p = [[math.exp(a) / (math.exp(a) + math.exp(b)), math.exp(b) / (math.exp(a) + math.exp(b))]
         for a, b in logits]
    f = [2 / 3, 1 / 3]  # tokens 0 and 2 go to expert 0, token 1 to expert 1
    P = [sum(r[i] for r in p) / 3 for i in range(2)]
    aux = 0.01 * 2 * (f[0] * P[0] + f[1] * P[1])
    z = 0.1 * sum(math.log(math.exp(a) + math.exp(b)) ** 2 for a, b in logits) / 3
    assert moe.aux["aux_loss"].item() == pytest.approx(aux, rel=1e-6)
    assert moe.aux["z_loss"].item() == pytest.approx(z, rel=1e-6)
    assert moe.aux["aux_loss"].requires_grad and moe.aux["z_loss"].requires_grad


def test_aux_loss_is_hf_load_balancing_loss_over_k():
    moe = MoE(sota(aux_loss_alpha=1.0))
    randomise(moe)
    x = torch.randn(2, 5, C)
    moe(x)
    hf = load_balancing_loss_func((moe.gate(x.reshape(-1, C)),), 8, top_k=2)
    torch.testing.assert_close(moe.aux["aux_loss"] * 2, hf, atol=1e-6, rtol=0)


def test_zero_coefficients_give_zero_terms():
    moe = MoE(sota())
    moe(torch.randn(1, 3, C))
    assert moe.aux["aux_loss"].item() == 0 and moe.aux["z_loss"].item() == 0


def skewed_layer(gamma: float) -> tuple[MoE, torch.Tensor]:
    """A sigmoid router whose experts 0 and 1 have weights along a direction d that every
    input shares (inputs are N(0, 1) + 2 d): they win nearly every token's choices."""
    torch.manual_seed(0)
    moe = MoE(sota(gating="sigmoid", n_routed_experts=8, num_experts_per_tok=2,
                   bias_update_speed=gamma))
    d = torch.randn(C)
    d = d / d.norm()
    with torch.no_grad():
        moe.gate.weight.normal_(0.0, 0.1)
        moe.gate.weight[:2] += d
    for p in moe.parameters():
        p.requires_grad_(False)  # only the bias moves: no auxiliary loss, no training
    return moe, 2 * d


def test_bias_update_alone_balances_a_skewed_router():
    # gamma = 0.005 moves the bias far enough in ~40 steps of 512 tokens; the sign update
    # then hovers around balance (max/mean 1.05-1.2 on 4096 held-out tokens in steps 40-80)
    moe, shift = skewed_layer(gamma=0.005)
    holder = SimpleNamespace(raw_model=moe)
    probe = torch.randn(4096, C) + shift
    moe.eval()
    moe(probe)
    before = moe.load.max() / moe.load.mean()
    assert before > 2
    moe.train()
    with torch.no_grad():
        for _ in range(80):
            moe(torch.randn(512, C) + shift)
            info = balance_bias_hook(holder, {})
    assert set(info) == {"moe_maxvio", "moe_maxvio_max"}
    moe.eval()
    moe(probe)
    after = moe.load.max() / moe.load.mean()
    assert after < 1.3, (float(before), float(after))
    assert max_violation(moe.load) == pytest.approx(float(after) - 1, rel=1e-6)


def test_bias_does_not_move_without_gamma_and_eval_forwards_do_not_count():
    moe, shift = skewed_layer(gamma=0.0)
    moe(torch.randn(2, 8, C) + shift)
    balance_bias_hook(SimpleNamespace(raw_model=moe), {})
    assert moe.gate.e_score_correction_bias.abs().sum() == 0
    moe.eval()
    moe.config.bias_update_speed = 0.1
    moe(torch.randn(2, 8, C))
    assert balance_bias_hook(SimpleNamespace(raw_model=moe), {}) == {}  # nothing was trained


class TinyLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.mlp = nn.ModuleList([MoE(cfg, 1), MoE(cfg, 2)])
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)

    def forward(self, idx):
        x = self.emb(idx)
        for m in self.mlp:
            x = x + m(x)
        return self.head(x)


def test_trainer_hook_uses_the_load_of_every_micro_batch():
    from week03_training import TrainConfig, Trainer

    cfg = sota(gating="sigmoid", aux_loss_alpha=0.01, z_loss_coef=0.001, bias_update_speed=0.05)
    model = TinyLM(cfg)
    batches = [(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8))) for _ in range(2)]
    seen = []
    for m in model.mlp:  # record every training forward's load
        m.register_forward_hook(lambda mod, args, out: seen.append((mod, mod.load.clone())))
    tc = TrainConfig(steps=1, batch_size=2, block_size=8, grad_accum=2, device="cpu",
                     progress=False, ckpt_every=0, save_final=False, write_metrics=False)
    trainer = Trainer(model, None, tc, loss_fn=moe_loss_fn, hooks=[balance_bias_hook])
    info = trainer.train_step(batches)
    for m in model.mlp:
        load = sum(ld for mod, ld in seen if mod is m)
        assert float(load.sum()) == 2 * 16 * 2  # two micro-batches of 16 tokens, k = 2
        expect = 0.05 * torch.sign(load.mean() - load)
        torch.testing.assert_close(m.gate.e_score_correction_bias, expect)
        assert float(m.load_since_step.sum()) == 0
    for key in ("aux_loss", "z_loss", "ce_loss", "moe_maxvio"):
        assert key in info
    loss, metrics = moe_aux_loss(model)
    assert loss.item() == pytest.approx(metrics["aux_loss"] + metrics["z_loss"], rel=1e-6)


def test_counts_use_the_active_path():
    cfg = sota(n_shared_experts=1)
    assert active_params(cfg) == 8 * C + (2 + 1) * 3 * C * I
    assert moe_flops_per_token(cfg) == 2 * active_params(cfg)
    model = TinyLM(cfg)
    total = sum(p.numel() for p in model.parameters())
    assert active_param_count(model) == total - 2 * (8 - 2) * 3 * C * I
    from week03_training.flops import flops_per_token
    assert train_flops_per_token(model, 16) == flops_per_token(model, 16) - 6 * 2 * 6 * 3 * C * I


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than num_experts_per_tok"):
        MoE(sota(n_routed_experts=8, num_experts_per_tok=3, n_group=4, topk_group=1))
    with pytest.raises(ValueError, match="at most n_routed_experts"):
        sota(n_routed_experts=2, num_experts_per_tok=3)
    with pytest.raises(ValueError, match="capacity_factor"):
        sota(capacity_factor=0.0)
    with pytest.raises(TypeError, match="SotaConfig"):
        from week04_modern_arch_tools import LlamaConfig
        MoE(LlamaConfig(n_embd=C, n_head=4, n_kv_head=4))
    ours = MoE(sota(n_shared_experts=1))
    with pytest.raises(ValueError, match="no shared experts"):
        load_hf_mixtral(ours, mixtral_pair()[1])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_grouped_mm_dispatch_equals_the_slice_loop(device):
    from week08_sota.dispatch import _GROUPED_MM

    if _GROUPED_MM is None:
        pytest.skip("this torch build has no grouped matmul")
    moe = MoE(sota(n_shared_experts=1, capacity_factor=1.0)).to(device)
    randomise(moe)
    x = torch.randn(4, 32, C, device=device)
    outs, grads = [], []
    for grouped in (False, True):
        moe.grouped = grouped
        moe.zero_grad()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            y = moe(x)
        y.float().square().sum().backward()
        outs.append(y.float())
        grads.append([p.grad.clone() for p in (moe.gate.weight, moe.experts.gate_up_proj,
                                                  moe.experts.down_proj)])
    tol = dict(atol=ATOL, rtol=0) if device == "cpu" else dict(atol=2e-2, rtol=2e-2)  # bf16
    torch.testing.assert_close(outs[0], outs[1], **tol)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **tol)
