"""Sparse upcycling: the upcycled MoE starts as the dense week04 model (exact relation in
``track_moe.upcycle``'s docstring): y_moe = (sum of the chosen weights) * m(x)."""

import pytest
import torch

from shared import save_model
from track_moe.upcycle import UpcycleConfig, copy_mlp_into_experts, upcycle, upcycle_checkpoint
from week04_modern_arch_tools import Llama, LlamaConfig
from week08_sota.moe import MoE

pytestmark = pytest.mark.stretch


def _dense(**kw):
    torch.manual_seed(0)
    args = dict(vocab_size=64, block_size=16, n_layer=3, n_head=4, n_kv_head=2, n_embd=32,
                intermediate_size=48)
    return Llama(LlamaConfig(**{**args, **kw}))


@pytest.mark.parametrize("first", [0, 1])
def test_renormalised_upcycled_model_gives_the_dense_logits(first):
    """With renormalised top-k weights the weights sum to 1 whatever the router says: the
    router is drawn wide (std 1) so the choice is far from uniform, and still logits agree."""
    dense = _dense()
    moe = upcycle(dense, UpcycleConfig(n_experts=4, top_k=2, first_moe_layer=first, router_std=1.0))
    assert sum(isinstance(b.mlp, MoE) for b in moe.blocks) == 3 - first
    x = torch.randint(0, 64, (2, 16))
    torch.testing.assert_close(moe(x), dense(x), rtol=0, atol=1e-5)


def test_uniform_router_without_renormalisation_scales_the_mlp_by_k_over_n():
    dense = _dense()
    moe = upcycle(dense, UpcycleConfig(n_experts=8, top_k=2, norm_topk_prob=False))
    layer, mlp = moe.blocks[1].mlp, dense.blocks[1].mlp
    with torch.no_grad():
        layer.gate.weight.zero_()                       # every p_j = 1/8
    h = torch.randn(2, 5, 32)
    torch.testing.assert_close(layer(h), mlp(h) * 2 / 8, rtol=0, atol=1e-6)


def test_any_router_without_renormalisation_scales_by_the_chosen_probabilities():
    dense = _dense()
    moe = upcycle(dense, UpcycleConfig(n_experts=4, top_k=2, norm_topk_prob=False, router_std=0.5))
    layer, mlp = moe.blocks[0].mlp, dense.blocks[0].mlp
    h = torch.randn(2, 5, 32)
    p = torch.softmax(h.reshape(-1, 32) @ layer.gate.weight.t(), -1)          # (S, N)
    scale = p.topk(2, -1).values.sum(-1).view(2, 5, 1)
    torch.testing.assert_close(layer(h), mlp(h) * scale, rtol=0, atol=1e-6)


def test_every_expert_is_a_copy_of_the_dense_mlp_and_training_moves_them_apart():
    dense = _dense()
    moe = upcycle(dense, UpcycleConfig(n_experts=4, top_k=1))
    gu = moe.blocks[2].mlp.experts.gate_up_proj
    for e in range(4):
        assert torch.equal(gu[e], dense.blocks[2].mlp.fc.weight)
        assert torch.equal(moe.blocks[2].mlp.experts.down_proj[e], dense.blocks[2].mlp.proj.weight)
    x = torch.randint(0, 64, (4, 16))
    moe(x).square().mean().backward()                 # top-1: experts get different tokens
    g = gu.grad.flatten(1)
    assert (g[0] - g[1]).abs().max() > 0 or (g[2] - g[3]).abs().max() > 0


def test_checkpoint_path_gives_the_same_model(tmp_path):
    dense = _dense()
    path = save_model(tmp_path / "dense.safetensors", dense)
    a, b = upcycle(dense, seed=3), upcycle_checkpoint(path, seed=3)
    for (n, p), (n2, p2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert n == n2 and torch.equal(p, p2), n


def test_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="SwiGLU"):
        upcycle(_dense(mlp="relu2"))
    moe = MoE(upcycle(_dense()).config, 0)
    wrong = _dense(intermediate_size=32).blocks[0].mlp
    with pytest.raises(ValueError, match="dense width"):
        copy_mlp_into_experts(wrong, moe)
