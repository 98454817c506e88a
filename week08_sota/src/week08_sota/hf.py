"""Convert between our ``SotaModel`` (MLA + MoE) and ``transformers.DeepseekV3ForCausalLM``.

The same network under other names (ours -> Hugging Face, in layer i):

- ``attn.q_proj`` -> ``self_attn.q_proj``, or ``attn.q_a`` / ``q_norm`` / ``q_b`` ->
  ``q_a_proj`` / ``q_a_layernorm`` / ``q_b_proj`` (``q_lora_rank`` 0 <-> None);
  ``attn.kv_a`` / ``kv_norm`` / ``kv_b`` -> ``kv_a_proj_with_mqa`` / ``kv_a_layernorm`` /
  ``kv_b_proj``; ``attn.proj`` -> ``o_proj``; ``ln_1`` / ``ln_2`` -> ``input_layernorm`` /
  ``post_attention_layernorm``;
- dense layers (``i < first_k_dense_replace``, or every layer of a model with
  ``moe=False``): week04's SwiGLU ``fc`` = [gate; up] -> ``DeepseekV3MLP``'s
  ``gate_proj`` / ``up_proj``, ``proj`` -> ``down_proj``; MoE layers: ``moe.load_hf_moe`` /
  ``moe.export_hf_moe`` (router weight and bias, fused experts, shared experts).

RoPE layout (the choice made here): our model always rotates in week04's "rotate half"
layout (channel i pairs with i + d_r/2). DeepSeek's checkpoints, and Hugging Face with
``rope_interleave=True`` (its default), rotate interleaved pairs (2i, 2i+1) and return the
rotated channels de-interleaved, [evens; odds]. Permuting the rotary rows of the query
projection (``q_proj`` or ``q_b_proj``, each head's last ``qk_rope_head_dim`` rows) and of
``kv_a_proj_with_mqa`` (its last ``qk_rope_head_dim`` rows) from interleaved to half
(week04's ``interleaved_to_half``) makes the two networks compute the same scores, so
the conversion permutes and nothing else changes; ``rope_interleave=False`` copies as is.

Routing: Hugging Face's DeepSeek-V3 router is the sigmoid one (``gating="sigmoid"``); a
model with softmax gating, a capacity factor or a ReLU^2 MLP has no Hugging Face twin and
raises. ``transformers`` is imported lazily.
"""

from __future__ import annotations

import torch

from week04_modern_arch_tools.hf import half_to_interleaved, interleaved_to_half, rope_of
from week08_sota.config import SotaConfig
from week08_sota.model import SotaModel

ROPE_KINDS = ("default", "yarn", "linear", "llama3")

# ---------------------------------------------------------------- configs


def config_from_hf(hf_cfg, attention: str = "sdpa") -> SotaConfig:
    """Our ``SotaConfig`` for a ``transformers.DeepseekV3Config``; raises for what we lack."""
    problems = []
    if getattr(hf_cfg, "attention_bias", False):
        problems.append("attention_bias=True")
    if hf_cfg.hidden_act != "silu":
        problems.append(f"hidden_act={hf_cfg.hidden_act!r} (ours: silu, i.e. SwiGLU)")
    kv_heads = getattr(hf_cfg, "num_key_value_heads", None) or hf_cfg.num_attention_heads
    if kv_heads != hf_cfg.num_attention_heads:
        problems.append(f"num_key_value_heads={kv_heads} != num_attention_heads")
    base, scaling = rope_of(hf_cfg)
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) not in ROPE_KINDS:
        problems.append(f"rope scaling {scaling} (ours: {ROPE_KINDS})")
    if getattr(hf_cfg, "n_shared_experts", 1) in (0, None):
        problems.append("n_shared_experts=0 (Hugging Face then keeps a zero-width MLP)")
    if problems:
        raise ValueError("this DeepseekV3ForCausalLM cannot be expressed by our SotaModel: "
                         + "; ".join(problems))
    L = hf_cfg.num_hidden_layers
    dense = min(hf_cfg.first_k_dense_replace or 0, L)
    if scaling is not None:
        scaling = {k: v for k, v in scaling.items() if v is not None}
    return SotaConfig(
        vocab_size=hf_cfg.vocab_size, block_size=hf_cfg.max_position_embeddings, n_layer=L,
        n_head=hf_cfg.num_attention_heads, n_embd=hf_cfg.hidden_size,
        intermediate_size=hf_cfg.intermediate_size, rope_base=base, rope_scaling=scaling,
        norm_eps=hf_cfg.rms_norm_eps, tie_embeddings=bool(hf_cfg.tie_word_embeddings),
        mlp="swiglu", qk_norm=False, logit_softcap=None, attention=attention, attn_type="mla",
        kv_lora_rank=hf_cfg.kv_lora_rank, q_lora_rank=hf_cfg.q_lora_rank or 0,
        qk_nope_head_dim=hf_cfg.qk_nope_head_dim, qk_rope_head_dim=hf_cfg.qk_rope_head_dim,
        v_head_dim=hf_cfg.v_head_dim, moe=dense < L, n_routed_experts=hf_cfg.n_routed_experts,
        n_shared_experts=hf_cfg.n_shared_experts,
        num_experts_per_tok=hf_cfg.num_experts_per_tok,
        moe_intermediate_size=hf_cfg.moe_intermediate_size,
        first_k_dense_replace=dense if dense < L else 0, gating="sigmoid",
        norm_topk_prob=bool(hf_cfg.norm_topk_prob),
        routed_scaling_factor=float(hf_cfg.routed_scaling_factor),
        n_group=hf_cfg.n_group or 1, topk_group=hf_cfg.topk_group or 1)


def hf_config(config: SotaConfig, attn_implementation: str = "eager", rope_interleave: bool = True):
    """The ``transformers.DeepseekV3Config`` of the same network; raises for what it lacks."""
    from transformers import DeepseekV3Config

    problems = []
    if config.attn_type != "mla":
        problems.append(f"attn_type={config.attn_type!r} (DeepSeek-V3 is MLA)")
    if config.mlp != "swiglu":
        problems.append(f"mlp={config.mlp!r}")
    if config.logit_softcap is not None:
        problems.append(f"logit_softcap={config.logit_softcap}")
    if config.dropout:
        problems.append(f"dropout={config.dropout}")
    if config.moe and config.gating != "sigmoid":
        problems.append(f"gating={config.gating!r} (DeepSeek-V3's router is 'sigmoid')")
    if config.moe and config.capacity_factor is not None:
        problems.append(f"capacity_factor={config.capacity_factor}")
    if config.moe and not config.n_shared_experts:
        problems.append("n_shared_experts=0")
    if problems:
        raise ValueError("Hugging Face's DeepseekV3 cannot express " + ", ".join(problems))
    rope = {"rope_type": "default", "rope_theta": config.rope_base}
    if config.rope_scaling is not None:
        rope = {**config.rope_scaling, "rope_theta": config.rope_base}
        rope["rope_type"] = rope.pop("type", rope.get("rope_type"))
    return DeepseekV3Config(
        vocab_size=config.vocab_size, hidden_size=config.n_embd,
        intermediate_size=config.intermediate_size,
        moe_intermediate_size=config.moe_intermediate_size, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.n_head,
        n_shared_experts=config.n_shared_experts, n_routed_experts=config.n_routed_experts,
        routed_scaling_factor=config.routed_scaling_factor, kv_lora_rank=config.kv_lora_rank,
        q_lora_rank=config.q_lora_rank or None, qk_rope_head_dim=config.qk_rope_head_dim,
        v_head_dim=config.v_head_dim, qk_nope_head_dim=config.qk_nope_head_dim,
        n_group=config.n_group, topk_group=config.topk_group,
        num_experts_per_tok=config.num_experts_per_tok,
        first_k_dense_replace=config.first_k_dense_replace if config.moe else config.n_layer,
        norm_topk_prob=config.norm_topk_prob, hidden_act="silu",
        max_position_embeddings=config.block_size, rms_norm_eps=config.norm_eps,
        tie_word_embeddings=config.tie_embeddings, rope_parameters=rope,
        rope_interleave=rope_interleave, attention_bias=False, attention_dropout=0.0,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, num_nextn_predict_layers=0,
        attn_implementation=attn_implementation)


# ---------------------------------------------------------------- RoPE rows


def _rope_rows(w: torch.Tensor, n_heads: int, rope_dim: int, fn) -> torch.Tensor:
    """Apply ``fn`` (a layout permutation) to the last ``rope_dim`` rows of each of the
    ``n_heads`` row groups of ``w`` (n_heads * head_rows, in)."""
    rows, C = w.shape
    per = w.view(n_heads, rows // n_heads, C)
    rope = fn(per[:, -rope_dim:].reshape(n_heads * rope_dim, C), n_heads)
    return torch.cat((per[:, :-rope_dim], rope.view(n_heads, rope_dim, C)), dim=1).reshape(rows, C)


def _attn_pairs(config: SotaConfig) -> list[tuple[str, str, int]]:
    """(ours, theirs, rope groups: 0 none, H per query head, 1 the shared key) per tensor."""
    H = config.n_head
    if config.q_lora_rank:
        q = [("q_a.weight", "q_a_proj.weight", 0), ("q_norm.weight", "q_a_layernorm.weight", 0),
             ("q_b.weight", "q_b_proj.weight", H)]
    else:
        q = [("q_proj.weight", "q_proj.weight", H)]
    return q + [("kv_a.weight", "kv_a_proj_with_mqa.weight", 1),
                ("kv_norm.weight", "kv_a_layernorm.weight", 0),
                ("kv_b.weight", "kv_b_proj.weight", 0), ("proj.weight", "o_proj.weight", 0)]


def _convert(model: SotaModel, hf_model, to_ours: bool, interleave: bool) -> None:
    from week08_sota.moe import export_hf_moe, load_hf_moe

    c = model.config
    ours, theirs = model.state_dict(), hf_model.state_dict()
    pairs = [("tok_emb.weight", "model.embed_tokens.weight"), ("ln_f.weight", "model.norm.weight")]
    if not c.tie_embeddings:
        pairs.append(("lm_head.weight", "lm_head.weight"))
    for i in range(c.n_layer):
        a, b = f"blocks.{i}.", f"model.layers.{i}."
        pairs += [(a + "ln_1.weight", b + "input_layernorm.weight"),
                  (a + "ln_2.weight", b + "post_attention_layernorm.weight")]
    permute = interleaved_to_half if to_ours else half_to_interleaved
    with torch.no_grad():
        for a, b in pairs:
            (ours[a] if to_ours else theirs[b]).copy_(theirs[b] if to_ours else ours[a])
        for i, block in enumerate(model.blocks):
            a, b = f"blocks.{i}.attn.", f"model.layers.{i}.self_attn."
            for x, y, groups in _attn_pairs(c):
                src = theirs[b + y] if to_ours else ours[a + x]
                if groups and interleave:
                    src = _rope_rows(src, groups, c.qk_rope_head_dim, permute)
                (ours[a + x] if to_ours else theirs[b + y]).copy_(src)
            hf_mlp = hf_model.model.layers[i].mlp
            if c.layer_uses_moe(i):
                (load_hf_moe if to_ours else export_hf_moe)(block.mlp, hf_mlp)
            elif to_ours:
                block.mlp.fc.weight.copy_(torch.cat((hf_mlp.gate_proj.weight,
                                                     hf_mlp.up_proj.weight), dim=0))
                block.mlp.proj.weight.copy_(hf_mlp.down_proj.weight)
            else:
                gate, up = block.mlp.fc.weight.chunk(2, dim=0)
                hf_mlp.gate_proj.weight.copy_(gate)
                hf_mlp.up_proj.weight.copy_(up)
                hf_mlp.down_proj.weight.copy_(block.mlp.proj.weight)


# ---------------------------------------------------------------- the two directions


def sota_from_hf(hf_model, attention: str = "sdpa", cls=SotaModel) -> SotaModel:
    """A ``SotaModel`` holding a ``DeepseekV3ForCausalLM``'s weights (rotary rows permuted
    from interleaved pairs when ``rope_interleave``)."""
    config = config_from_hf(hf_model.config, attention=attention)
    model = cls(config)
    _convert(model, hf_model, True, bool(getattr(hf_model.config, "rope_interleave", True)))
    return model.eval()


def sota_to_hf(model: SotaModel, attn_implementation: str = "eager", rope_interleave: bool = True):
    """A ``DeepseekV3ForCausalLM`` holding ``model``'s weights (float32, eval mode);
    ``rope_interleave=True`` writes DeepSeek's interleaved rotary layout."""
    from transformers import DeepseekV3ForCausalLM

    hf = DeepseekV3ForCausalLM(hf_config(model.config, attn_implementation, rope_interleave))
    hf = hf.to(model.tok_emb.weight.dtype)
    _convert(model, hf, False, rope_interleave)
    return hf.eval()
