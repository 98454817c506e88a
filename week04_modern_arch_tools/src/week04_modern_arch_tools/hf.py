"""Convert between our ``Llama`` and Hugging Face's ``transformers.LlamaForCausalLM``.

The two are the same network with different weight names, plus one packing
difference: we keep q, k and v in one ``qkv`` matrix and the MLP's gate and
up projections in one ``fc`` matrix (one matmul each), Hugging Face keeps
``q_proj``, ``k_proj``, ``v_proj``, ``gate_proj``, ``up_proj``; they are
concatenated on the way in and split on the way out.

RoPE layout. Both sides use the "rotate half" layout: in each head, channel
``i`` and channel ``i + head_dim/2`` form one rotated pair. Meta's original
checkpoints use the interleaved layout (pairs ``(2i, 2i+1)``, rotation as a
complex multiplication); ``interleaved_to_half`` permutes the rows of a
q/k projection from that layout to ours (the same permutation Hugging Face's
conversion script applies), and ``half_to_interleaved`` undoes it.

Left out: what Hugging Face's Llama cannot express raises a ``ValueError``
(QK-norm, logit soft-capping, the ReLU^2 MLP, biases, dropout); use a model
family that has them (Qwen3, Gemma 2) if you need those on the Hub side.
``transformers`` is imported lazily: only this module needs it.
"""

from __future__ import annotations

import inspect

import torch

from week04_modern_arch_tools.model import Llama, LlamaConfig

# ---------------------------------------------------------------- names

_BLOCK_MAP = [  # (ours, theirs) inside layer i; qkv is handled apart
    ("ln_1.weight", "input_layernorm.weight"),
    ("attn.proj.weight", "self_attn.o_proj.weight"),
    ("ln_2.weight", "post_attention_layernorm.weight"),
    ("mlp.proj.weight", "mlp.down_proj.weight"),
]


def name_map(n_layer: int) -> list[tuple[str, str]]:
    """(our name, Hugging Face name) for every tensor except the fused qkv and gate/up."""
    out = [("tok_emb.weight", "model.embed_tokens.weight"), ("ln_f.weight", "model.norm.weight"),
           ("lm_head.weight", "lm_head.weight")]
    for i in range(n_layer):
        out += [(f"blocks.{i}.{a}", f"model.layers.{i}.{b}") for a, b in _BLOCK_MAP]
    return out


# ---------------------------------------------------------------- RoPE layouts


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q/k projection (n_heads * hd, C): interleaved pairs -> rotate-half pairs.

    Within each head, output channel ``2i`` moves to ``i`` and ``2i+1`` to
    ``i + hd/2``, so the pair Meta rotates together is the pair we rotate.
    """
    out, C = w.shape
    hd = out // n_heads
    return w.view(n_heads, hd // 2, 2, C).transpose(1, 2).reshape(out, C)


def half_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of ``interleaved_to_half``."""
    out, C = w.shape
    hd = out // n_heads
    return w.view(n_heads, 2, hd // 2, C).transpose(1, 2).reshape(out, C)


# ---------------------------------------------------------------- configs


def rope_of(hf_cfg) -> tuple[float, dict | None]:
    """(RoPE base, scaling dict or None) of a Hugging Face config, transformers 4.x or 5.x
    (week08's DeepSeek-V3 conversion reads its configs with it too)."""
    params = getattr(hf_cfg, "rope_parameters", None)  # transformers >= 5
    if params is None:
        params = dict(getattr(hf_cfg, "rope_scaling", None) or {})
        params.setdefault("rope_theta", getattr(hf_cfg, "rope_theta", 10000.0))
    params = dict(params)
    base = float(params.pop("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind in (None, "default"):
        return base, None
    return base, params


def config_from_hf(hf_cfg, attention: str = "sdpa") -> LlamaConfig:
    """Our ``LlamaConfig`` for a ``transformers.LlamaConfig``; raises for what we cannot express."""
    problems = []
    if getattr(hf_cfg, "attention_bias", False) or getattr(hf_cfg, "mlp_bias", False):
        problems.append("biases (attention_bias / mlp_bias)")
    if hf_cfg.hidden_act != "silu":
        problems.append(f"hidden_act={hf_cfg.hidden_act!r} (ours: silu, i.e. SwiGLU)")
    head_dim = getattr(hf_cfg, "head_dim", None)
    if head_dim not in (None, hf_cfg.hidden_size // hf_cfg.num_attention_heads):
        problems.append(f"head_dim={head_dim} != hidden_size / num_attention_heads")
    base, scaling = rope_of(hf_cfg)
    if scaling is not None and scaling.get("rope_type", scaling.get("type")) not in ("linear",
                                                                                      "llama3"):
        problems.append(f"rope scaling {scaling} (ours: linear, llama3)")
    if problems:
        raise ValueError("this LlamaForCausalLM cannot be expressed by our Llama: "
                         + "; ".join(problems))
    return LlamaConfig(
        vocab_size=hf_cfg.vocab_size, block_size=hf_cfg.max_position_embeddings,
        n_layer=hf_cfg.num_hidden_layers, n_head=hf_cfg.num_attention_heads,
        n_kv_head=hf_cfg.num_key_value_heads or hf_cfg.num_attention_heads,
        n_embd=hf_cfg.hidden_size, intermediate_size=hf_cfg.intermediate_size,
        rope_base=base, rope_scaling=scaling, qk_norm=False, mlp="swiglu",
        tie_embeddings=bool(hf_cfg.tie_word_embeddings), logit_softcap=None,
        norm_eps=hf_cfg.rms_norm_eps, attention=attention)


def hf_config(config: LlamaConfig, attn_implementation: str = "eager"):
    """The ``transformers.LlamaConfig`` of the same network; raises for what it lacks."""
    from transformers import LlamaConfig as HFLlamaConfig

    problems = []
    if config.qk_norm:
        problems.append("qk_norm=True")
    if config.logit_softcap is not None:
        problems.append(f"logit_softcap={config.logit_softcap}")
    if config.sliding_window is not None:
        problems.append(f"sliding_window={config.sliding_window}")
    if config.mlp != "swiglu":
        problems.append(f"mlp={config.mlp!r}")
    if config.dropout:
        problems.append(f"dropout={config.dropout}")
    for name, default in (("attn_scale", True), ("causal", True), ("norm_position", "pre")):
        if getattr(config, name, default) != default:  # week01's experiment switches
            problems.append(f"{name}={getattr(config, name)!r}")
    if problems:
        raise ValueError("Hugging Face's Llama cannot express " + ", ".join(problems)
                         + "; build the model with qk_norm=False, logit_softcap=None, "
                           "mlp='swiglu', dropout=0.0 to convert it")
    rope = {"rope_type": "default", "rope_theta": config.rope_base}
    if config.rope_scaling is not None:
        rope = {**config.rope_scaling, "rope_theta": config.rope_base}
        rope["rope_type"] = rope.pop("type", rope.get("rope_type"))
    kw = dict(vocab_size=config.vocab_size, hidden_size=config.n_embd,
              intermediate_size=config.intermediate_size, num_hidden_layers=config.n_layer,
              num_attention_heads=config.n_head, num_key_value_heads=config.n_kv_head,
              head_dim=config.head_dim, max_position_embeddings=config.block_size,
              rms_norm_eps=config.norm_eps, tie_word_embeddings=config.tie_embeddings,
              attention_bias=False, mlp_bias=False, hidden_act="silu",
              bos_token_id=None, eos_token_id=None, pad_token_id=None,
              attn_implementation=attn_implementation)
    if "rope_parameters" in inspect.signature(HFLlamaConfig.__init__).parameters:
        kw["rope_parameters"] = rope
    else:  # transformers 4.x
        kw["rope_theta"] = rope.pop("rope_theta")
        kw["rope_scaling"] = None if rope["rope_type"] == "default" else rope
    return HFLlamaConfig(**kw)


# ---------------------------------------------------------------- weights


def llama_from_hf(hf_model, attention: str = "sdpa", cls=Llama) -> Llama:
    """Copy a ``LlamaForCausalLM``'s weights into a new ``Llama``."""
    config = config_from_hf(hf_model.config, attention=attention)
    model = cls(config)
    theirs = hf_model.state_dict()
    ours = model.state_dict()
    with torch.no_grad():
        for a, b in name_map(config.n_layer):
            if a == "lm_head.weight" and config.tie_embeddings:
                continue
            ours[a].copy_(theirs[b])
        for i in range(config.n_layer):
            pre = f"model.layers.{i}.self_attn."
            qkv = torch.cat([theirs[pre + "q_proj.weight"], theirs[pre + "k_proj.weight"],
                             theirs[pre + "v_proj.weight"]], dim=0)
            ours[f"blocks.{i}.attn.qkv.weight"].copy_(qkv)
            mlp = f"model.layers.{i}.mlp."
            ours[f"blocks.{i}.mlp.fc.weight"].copy_(
                torch.cat([theirs[mlp + "gate_proj.weight"], theirs[mlp + "up_proj.weight"]], 0))
    return model


def llama_to_hf(model: Llama, attn_implementation: str = "eager"):
    """A ``LlamaForCausalLM`` holding ``model``'s weights (float32, eval mode)."""
    from transformers import LlamaForCausalLM

    config = model.config
    hf = LlamaForCausalLM(hf_config(config, attn_implementation))
    ours = model.state_dict()
    theirs = hf.state_dict()
    hd = config.head_dim
    with torch.no_grad():
        for a, b in name_map(config.n_layer):
            if b == "lm_head.weight" and config.tie_embeddings:
                continue
            theirs[b].copy_(ours[a])
        for i in range(config.n_layer):
            q, k, v = ours[f"blocks.{i}.attn.qkv.weight"].split(
                [config.n_head * hd, config.n_kv_head * hd, config.n_kv_head * hd], dim=0)
            pre = f"model.layers.{i}.self_attn."
            theirs[pre + "q_proj.weight"].copy_(q)
            theirs[pre + "k_proj.weight"].copy_(k)
            theirs[pre + "v_proj.weight"].copy_(v)
            gate, up = ours[f"blocks.{i}.mlp.fc.weight"].chunk(2, dim=0)
            theirs[f"model.layers.{i}.mlp.gate_proj.weight"].copy_(gate)
            theirs[f"model.layers.{i}.mlp.up_proj.weight"].copy_(up)
    return hf.eval()
