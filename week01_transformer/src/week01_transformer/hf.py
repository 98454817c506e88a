"""Convert between our ``GPT`` and Hugging Face's ``transformers.GPT2LMHeadModel``.

The two models are the same network with different names for the weights.
One real difference: Hugging Face stores GPT-2's linear layers as ``Conv1D``,
whose weight is (in, out), the transpose of ``nn.Linear``'s (out, in); so the
four matrices per block (``c_attn``, ``attn.c_proj``, ``c_fc``, ``mlp.c_proj``)
are transposed on the way in and on the way out.

Hugging Face's GPT-2 always has biases. A ``GPT`` with ``bias=False`` converts
to a Hugging Face model whose biases are all zero (which computes the same
function), and converting back with ``bias=False`` checks that they are zero.

The experiment switch ``attn_scale=False`` is Hugging Face's
``scale_attn_weights=False`` (both ways). ``causal=False`` and
``norm_position="post"`` have no GPT-2 counterpart: ``to_hf`` refuses them.

Left out: the GPT-2 variants this architecture cannot express (cross
attention, ``scale_attn_by_inverse_layer_idx``, an untied head, an MLP width
other than 4 * n_embd, activations other than tanh-GELU); they raise.
``transformers`` is imported lazily: only this module needs it.
"""

from __future__ import annotations

import torch

from week01_transformer.model import GPT, GPTConfig

# the (ours, theirs) names inside block i; True marks a Conv1D weight (transposed)
_BLOCK_MAP = [
    ("ln_1.weight", "ln_1.weight", False),
    ("ln_1.bias", "ln_1.bias", False),
    ("attn.qkv.weight", "attn.c_attn.weight", True),
    ("attn.qkv.bias", "attn.c_attn.bias", False),
    ("attn.proj.weight", "attn.c_proj.weight", True),
    ("attn.proj.bias", "attn.c_proj.bias", False),
    ("ln_2.weight", "ln_2.weight", False),
    ("ln_2.bias", "ln_2.bias", False),
    ("mlp.fc.weight", "mlp.c_fc.weight", True),
    ("mlp.fc.bias", "mlp.c_fc.bias", False),
    ("mlp.proj.weight", "mlp.c_proj.weight", True),
    ("mlp.proj.bias", "mlp.c_proj.bias", False),
]
_TOP_MAP = [
    ("tok_emb.weight", "transformer.wte.weight", False),
    ("pos_emb.weight", "transformer.wpe.weight", False),
    ("ln_f.weight", "transformer.ln_f.weight", False),
    ("ln_f.bias", "transformer.ln_f.bias", False),
]
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh")


def name_map(n_layer: int) -> list[tuple[str, str, bool]]:
    """Every (our name, Hugging Face name, transposed?) triple for ``n_layer`` blocks."""
    out = list(_TOP_MAP)
    for i in range(n_layer):
        out += [(f"blocks.{i}.{a}", f"transformer.h.{i}.{b}", t) for a, b, t in _BLOCK_MAP]
    return out


# ---------------------------------------------------------------- configs


def hf_config(config: GPTConfig, attn_implementation: str = "eager"):
    """The ``transformers.GPT2Config`` of the same network."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, n_inner=4 * config.n_embd,
        activation_function="gelu_new", layer_norm_epsilon=1e-5,
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        scale_attn_weights=config.attn_scale, scale_attn_by_inverse_layer_idx=False,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
        attn_implementation=attn_implementation,
    )


def config_from_hf(hf_cfg, bias: bool = True, attention: str = "explicit") -> GPTConfig:
    """Our ``GPTConfig`` for a ``GPT2Config``; raises for what we cannot express."""
    problems = []
    if hf_cfg.n_inner not in (None, 4 * hf_cfg.n_embd):
        problems.append(f"n_inner={hf_cfg.n_inner} (ours is fixed at 4 * n_embd)")
    if hf_cfg.activation_function not in _GELU_TANH:
        problems.append(f"activation_function={hf_cfg.activation_function!r} (ours: {_GELU_TANH})")
    if abs(hf_cfg.layer_norm_epsilon - 1e-5) > 1e-12:
        problems.append(f"layer_norm_epsilon={hf_cfg.layer_norm_epsilon} (ours: 1e-5)")
    if hf_cfg.scale_attn_by_inverse_layer_idx:
        problems.append("scale_attn_by_inverse_layer_idx (ours: 1/sqrt(head_dim), or 1 with "
                        "attn_scale=False)")
    if getattr(hf_cfg, "add_cross_attention", False):
        problems.append("cross attention")
    if not getattr(hf_cfg, "tie_word_embeddings", True):
        problems.append("an untied lm_head (ours ties it to the token embedding)")
    if problems:
        raise ValueError("this GPT-2 cannot be converted: " + "; ".join(problems))
    drops = {hf_cfg.resid_pdrop, hf_cfg.embd_pdrop, hf_cfg.attn_pdrop}
    return GPTConfig(vocab_size=hf_cfg.vocab_size, block_size=hf_cfg.n_positions,
                     n_layer=hf_cfg.n_layer, n_head=hf_cfg.n_head, n_embd=hf_cfg.n_embd,
                     dropout=float(max(drops)), bias=bias, attention=attention,
                     attn_scale=bool(hf_cfg.scale_attn_weights))


# ---------------------------------------------------------------- weights


def gpt_from_hf(model, bias: bool = True, attention: str = "explicit", cls=GPT) -> GPT:
    """Build a ``cls`` (``GPT``) with the weights of ``model`` (a ``GPT2LMHeadModel``)."""
    if not hasattr(model, "config") or not hasattr(model, "state_dict"):
        raise TypeError(f"expected a transformers GPT2LMHeadModel, got {type(model).__name__}")
    config = config_from_hf(model.config, bias=bias, attention=attention)
    theirs = model.state_dict()
    ours = cls(config)
    new_state = {}
    for mine, hf_name, transposed in name_map(config.n_layer):
        if hf_name not in theirs:
            raise KeyError(f"{hf_name} is missing from the Hugging Face state dict")
        t = theirs[hf_name]
        if mine.endswith("bias") and not bias:
            if t.abs().max() > 0:
                raise ValueError(f"{hf_name} is non-zero, so the model cannot be loaded with "
                                 "bias=False; use bias=True")
            continue
        new_state[mine] = t.t() if transposed else t
    new_state["lm_head.weight"] = new_state["tok_emb.weight"]
    with torch.no_grad():
        missing, unexpected = ours.load_state_dict(new_state, strict=False)
    if missing or unexpected:  # cannot happen unless the two name maps drift apart
        raise RuntimeError(f"conversion left missing={missing} unexpected={unexpected}")
    return ours.to(next(model.parameters()).dtype)


def gpt_to_hf(gpt: GPT, attn_implementation: str = "eager"):
    """A ``transformers.GPT2LMHeadModel`` computing the same function as ``gpt``."""
    from transformers import GPT2LMHeadModel

    config = gpt.config
    if not config.causal or config.norm_position != "pre":
        raise ValueError(f"Hugging Face's GPT-2 is causal and pre-norm; this model has "
                         f"causal={config.causal}, norm_position={config.norm_position!r} "
                         "and cannot be converted")
    hf = GPT2LMHeadModel(hf_config(config, attn_implementation=attn_implementation))
    ours = gpt.state_dict()
    theirs = hf.state_dict()
    new_state = {}
    for mine, hf_name, transposed in name_map(config.n_layer):
        if mine not in ours:  # a bias=False model: Hugging Face keeps a zero bias
            new_state[hf_name] = torch.zeros_like(theirs[hf_name])
            continue
        t = ours[mine]
        new_state[hf_name] = t.t().contiguous() if transposed else t.clone()
    new_state["lm_head.weight"] = new_state["transformer.wte.weight"]
    result = hf.load_state_dict(new_state, strict=False)
    # older transformers keep the causal mask as buffers (attn.bias, attn.masked_bias): not weights
    missing = [k for k in result.missing_keys if not k.endswith(("attn.bias", "attn.masked_bias"))]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"conversion left missing={missing} unexpected={result.unexpected_keys}")
    hf.tie_weights()
    hf.train(gpt.training)
    return hf.to(next(gpt.parameters()).dtype)
