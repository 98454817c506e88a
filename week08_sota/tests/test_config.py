"""SotaConfig: its derived sizes and its errors for bad values."""

import pytest

from week08_sota import SotaConfig

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

SMALL = dict(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=32)


def test_derived_sizes():
    c = SotaConfig(**SMALL, kv_lora_rank=24, qk_nope_head_dim=8, qk_rope_head_dim=4)
    assert c.qk_head_dim == 12 and c.latent_cache_elements() == 28
    assert c.moe_intermediate_size == c.intermediate_size // c.num_experts_per_tok
    assert [c.layer_uses_moe(i) for i in range(2)] == [False, True]  # first_k_dense_replace=1
    assert not SotaConfig(**SMALL, moe=False).layer_uses_moe(1)


@pytest.mark.parametrize("field, value, message", [
    ("attn_type", "mqa", r"attn_type must be one of \('gqa', 'mla'\)"),
    ("gating", "relu", r"gating must be one of \('softmax', 'sigmoid'\)"),
    ("qk_rope_head_dim", 5, "must be even"),
    ("kv_lora_rank", 0, "kv_lora_rank must be a positive int"),
    ("num_experts_per_tok", 9, r"num_experts_per_tok \(9\) must be at most n_routed_experts \(8\)"),
    ("n_group", 3, r"n_group \(3\) must divide n_routed_experts"),
    ("capacity_factor", 0.0, "capacity_factor must be None or > 0"),
    ("aux_loss_alpha", -1.0, "aux_loss_alpha must be >= 0"),
    ("attn_scale", False, "apply to attn_type='gqa' only"),
    ("causal", False, "apply to attn_type='gqa' only"),
])
def test_bad_values_say_what_is_valid(field, value, message):
    with pytest.raises(ValueError, match=message):
        SotaConfig(**SMALL, **{field: value})
