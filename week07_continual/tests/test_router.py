"""The prototype router picks the right adapter for clearly separated tasks, without labels."""

import copy

import pytest
import torch

from week06_lora import inject_lora, lora_layers
from week07_continual import PrototypeRouter, base_only, embed_sequences
from week07_continual.tasks import prompt_ids

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")


def test_router_picks_the_right_task_and_falls_back_below_threshold(tiny_llama, two_task_stream):
    a, b = two_task_stream.tasks
    emb = {t.name: embed_sequences(tiny_llama, [prompt_ids(e) for e in t.train]) for t in (a, b)}
    router = PrototypeRouter(threshold=0.0)
    router.add("adapter_A", emb["A"][:6])  # prototypes from half the examples
    router.add("adapter_B", emb["B"][:6])
    names_a, conf_a = router.route(emb["A"])
    names_b, _ = router.route(emb["B"])
    assert names_a == ["adapter_A"] * 12 and names_b == ["adapter_B"] * 12
    assert bool((conf_a > 0.5).all())
    strict = PrototypeRouter.from_state({**router.state(), "threshold": 1.0})
    assert strict.route(emb["A"])[0] == [None] * 12  # nothing is that confident: the base answers
    back = PrototypeRouter.from_state(router.state())
    assert back.route(emb["B"])[0] == names_b


def test_embeddings_ignore_adapters_and_padding(tiny_llama):
    seqs = [[0, 1, 1, 1, 9], [0, 2, 2]]
    plain = embed_sequences(tiny_llama, seqs)
    alone = embed_sequences(tiny_llama, seqs[1:])
    # right padding after a causal prefix changes nothing; batched vs single matmuls: rounding only
    torch.testing.assert_close(plain[1:], alone, rtol=1e-5, atol=1e-6)
    base = copy.deepcopy(tiny_llama)  # the model without any adapter: what base_only must give
    inject_lora(tiny_llama, r=4, alpha=8, adapter="x")
    with torch.no_grad():
        for n, p in tiny_llama.named_parameters():
            if ".lora." in n:
                p.add_(1.0)  # a large adapter that would move every hidden state
    torch.testing.assert_close(embed_sequences(tiny_llama, seqs), plain)  # base_only inside
    active = {n: list(layer.active) for n, layer in lora_layers(tiny_llama).items()}
    assert all(a == ["x"] for a in active.values())
    idx = torch.tensor([seqs[0]])
    with torch.no_grad():
        out_with = tiny_llama(idx)
        with base_only(tiny_llama):
            out_base = tiny_llama(idx)
        want = base(idx)
    # the same base weights through the LoRA wrapper's plain path: rounding at most
    torch.testing.assert_close(out_base, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out_with, out_base)  # the adapter is active again outside
    # the adapters come back even when the block raises
    with pytest.raises(RuntimeError, match="inside"):
        with base_only(tiny_llama):
            assert all(layer.active == [] for layer in lora_layers(tiny_llama).values())
            raise RuntimeError("inside")
    assert {n: list(layer.active) for n, layer in lora_layers(tiny_llama).items()} == active
