"""Week 11 exercise, worked: ``param_counts`` (see ../memory.py for the task)."""

from __future__ import annotations


def param_counts(m) -> dict[str, int]:
    """Parameter counts of week04's Llama from its config, by role."""
    C, V, L, hd, I = m.n_embd, m.vocab_size, m.n_layer, m.head_dim, m.intermediate_size
    attn = C * (m.n_head + 2 * m.n_kv_head) * hd + m.n_head * hd * C      # qkv, proj
    mlp = (3 if m.mlp == "swiglu" else 2) * C * I
    norms = 2 * C + (2 * hd if m.qk_norm else 0)
    block_matmul = attn + mlp
    block = block_matmul + norms
    emb = V * C * (1 if m.tie_embeddings else 2)                          # table (+ head)
    total = L * block + emb + C
    muon = L * block_matmul
    return {"total": total, "block": block, "block_matmul": block_matmul, "root": emb + C,
            "head": V * C, "matmul": total - (0 if m.tie_embeddings else V * C), "muon": muon,
            "adamw": total - muon, "largest_adamw": V * C, "cast": muon + V * C}
