"""Week 11 exercise, where the memory goes: count the parameters from the config alone.

Every byte the planner predicts starts from parameter counts: fp32 weights and gradients
take 4 bytes per parameter each, AdamW's two moments 8, Muon's one momentum 4 for the
hidden matrices and AdamW's 8 for the rest; FSDP2 divides them by the world size and
gathers one block at a time, so it needs the count per block too. Work them out from the
shapes of week04's Llama (read week04_modern_arch_tools/src/.../modules.py and model.py):

- per block: the attention's qkv (C x (H + 2*Hkv)*hd), its output projection (H*hd x C),
  the MLP (SwiGLU: three C x I matrices; ReLU^2: two), two RMSNorm weights (C each) and,
  with QK-norm, the q and k norm weights (hd each). No biases.
- the root: the token embedding (V x C), the final norm (C), the head (V x C) unless tied.

Fill in ``param_counts`` WITHOUT calling ``num_params()`` (that is the answer the tests hold
yours against, with the real model's ``sum(p.numel())``), then run ``make week11-exercises``.
It replaces ``week11_scale.memory.param_counts`` (and the planner's name for it) while the
planner's tests run: the counts of the real models, d20's ~561M, and the planned peak memory
within 15% of the peak measured on this CPU.
"""

from __future__ import annotations


def param_counts(m) -> dict[str, int]:
    """From a ``LlamaConfig`` ``m``, the parameter counts::

        total         every parameter (a tied head counted once)
        block         one block's parameters (every block is the same size)
        block_matmul  one block's matrices (block minus its norm weights)
        root          the embedding table and the final norm (what is not in a block)
        head          the output head's matrix, V * C (tied or not)
        matmul        total minus the embedding table when the head is not tied
                      (the parameters that see a matmul: FLOPs count these)
        muon          every block's matrices (what Muon orthogonalises): n_layer * block_matmul
        adamw         the rest (embedding, head, norms): total - muon
        largest_adamw the largest AdamW parameter, V * C
        cast          what bf16 autocast copies: the block matrices and the head, muon + V * C

    Fields you need: ``m.n_embd`` (C), ``m.n_head`` (H), ``m.n_kv_head`` (Hkv), ``m.head_dim``
    (hd), ``m.intermediate_size`` (I), ``m.mlp`` ("swiglu" | "relu2"), ``m.qk_norm``,
    ``m.vocab_size`` (V), ``m.n_layer``, ``m.tie_embeddings``.
    """
    raise NotImplementedError("not implemented yet: param_counts (attention, MLP and norm "
                              "weights per block, then embedding, final norm and head)")
