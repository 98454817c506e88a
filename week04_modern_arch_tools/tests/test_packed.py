"""week04's Llama on packed rows: RoPE counts positions inside each document.

Checked two ways: every document of a packed row gets the logits it gets alone
(local/global windows included), and Hugging Face's ``LlamaForCausalLM`` with
the same weights, given the same block-diagonal mask and the packed position
ids that TRL's padding-free collator writes, gives the same logits.
"""

import pytest
import torch

from week01_transformer.cache import attention_mask, segment_positions
from week04_modern_arch_tools import Llama, LlamaConfig

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _row(lengths, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    docs = [torch.randint(0, V, (n,), generator=g) for n in lengths]
    seg = torch.tensor([[i for i, n in enumerate(lengths) for _ in range(n)]])
    return docs, torch.cat(docs)[None], seg


@pytest.mark.parametrize("extra", [{}, {"sliding_window": 4, "window_pattern": "SL"},
                                   {"qk_norm": True, "mlp": "relu2", "logit_softcap": 15.0}])
def test_packed_documents_equal_each_alone(extra):
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_kv_head=2,
                              n_embd=32, **extra)).eval()
    docs, row, seg = _row([6, 2, 9])
    out = model(row, segments=seg)
    start = 0
    for d in docs:
        torch.testing.assert_close(out[0, start:start + len(d)], model(d[None])[0],
                                   atol=1e-5, rtol=1e-5)
        start += len(d)


def test_packed_row_equals_hugging_face_with_position_ids():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_kv_head=2,
                              n_embd=32)).eval()
    hf = model.to_hf(attn_implementation="sdpa").eval()
    _, row, seg = _row([5, 3, 7])
    mask, _ = attention_mask(0, row.size(1), segments=seg)  # (1, 1, T, T)
    with torch.no_grad():
        theirs = hf(input_ids=row, position_ids=segment_positions(seg), attention_mask=mask).logits
        torch.testing.assert_close(model(row, segments=seg), theirs, atol=1e-5, rtol=1e-5)
