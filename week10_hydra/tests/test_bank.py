"""The adapter bank: per-row adapters and stacks by gather, equal to each row alone, to week06's
LoRA layers, and to PEFT's ``adapter_names`` mixed batch on Hugging Face's Llama."""

import copy

import pytest
import torch

from week01_transformer import DecodeConfig, Decoding, decode
from week06_lora import mixed_batch, set_active_adapters
from week10_hydra.bank import AdapterBank, ArrowSpec, as_stack

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

V = 97


@pytest.fixture
def pair(abc_bank):
    return abc_bank(V)


def test_each_row_of_a_mixed_batch_equals_that_row_alone(pair):
    base, bank, _ = pair
    x = torch.randint(0, V, (5, 12), generator=torch.Generator().manual_seed(1))
    rows = ["a", None, "c", [("a", 0.5), ("b", 2.0)], {"c": -1.0, "b": 0.3, "a": 1.0}]
    with torch.no_grad(), bank.use(rows):
        mixed = base(x)
    for i, spec in enumerate(rows):
        with torch.no_grad(), bank.use([spec]):
            alone = base(x[i:i + 1])
        assert torch.allclose(mixed[i], alone[0], atol=1e-5)
    with torch.no_grad():
        assert torch.equal(mixed[1], base(x[1:2])[0])  # the bare-base row gathers zeros
        assert not torch.allclose(mixed[0], base(x[:1])[0], atol=1e-3)  # adapters do act


def test_single_adapters_and_stacks_equal_week06s_lora_layers(pair):
    """A row's adapter is week06's active adapter; a stack with weight 1 each is week06's
    ``set_active([...])`` sum; ``mixed_batch`` (one pass per adapter) gives the same rows."""
    base, bank, ref = pair
    x = torch.randint(0, V, (4, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with bank.use(["b", "b", ["a", "c"], "c"]):
            ours = base(x)
        set_active_adapters(ref, ["b"])
        assert torch.allclose(ours[:2], ref(x[:2]), atol=1e-5)
        set_active_adapters(ref, ["a", "c"])
        assert torch.allclose(ours[2], ref(x[2:3])[0], atol=1e-5)
        set_active_adapters(ref, [])
        with mixed_batch(ref, ["b", "b", None, "c"]):
            loop = ref(x)
    assert torch.allclose(ours[[0, 1, 3]], loop[[0, 1, 3]], atol=1e-5)


def test_cached_decoding_with_rows_finishing_early_equals_each_row_alone(pair):
    """Prefill and the one-token step both go through the bank; ``on_keep=plan.keep`` keeps
    each row's adapters with it when other rows leave the batch."""
    base, bank, _ = pair
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, V, (n,), generator=g).tolist() for n in (5, 9, 3, 7)]
    specs = ["a", [("b", 1.0), ("c", 0.7)], None, "c"]
    cfg = DecodeConfig(max_new_tokens=14, temperature=0)
    alone = []
    for p, s in zip(prompts, specs):
        with bank.use([s]):
            alone.append(decode(base, [p], cfg)[0].ids)
    stop = alone[0][4]  # row 0 (and maybe others) ends early
    cfg = DecodeConfig(max_new_tokens=14, temperature=0, stop_tokens=(stop,))
    with bank.use(specs) as plan:
        d = Decoding(base, prompts, cfg, on_keep=plan.keep)
        rows = d.run()
    for row, ref in zip(rows, alone):
        n = ref.index(stop) + 1 if stop in ref else len(ref)
        assert row.ids == ref[:n]
    assert plan.batch_size < len(prompts)  # rows did leave, and the plan followed them
    assert len({tuple(r) for r in alone}) > 1  # different adapters, different texts


def test_equal_to_peft_adapter_names_on_hugging_face_llama(make_llama):
    """The same bank hooked on HF's LlamaForCausalLM, holding PEFT's own adapters, gives PEFT's
    mixed-batch logits (``adapter_names``, ``"__base__"`` for the bare base) row for row."""
    peft = pytest.importorskip("peft")
    from week04_modern_arch_tools.hf import llama_to_hf

    hf = llama_to_hf(make_llama(V)).eval()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    pm = peft.get_peft_model(copy.deepcopy(hf), peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False), adapter_name="t0")
    pm.add_adapter("t1", peft.LoraConfig(r=8, lora_alpha=4, target_modules=targets,
                                         init_lora_weights=False))
    pm.add_adapter("t2", peft.LoraConfig(r=2, lora_alpha=2, use_rslora=True,
                                         target_modules=targets, init_lora_weights=False))
    pm.eval()
    bank = AdapterBank(hf, targets=[n for n, m in hf.named_modules()
                                    if n.rsplit(".", 1)[-1] in targets])
    for name in ("t0", "t1", "t2"):
        bank.add_peft(name, pm)
    with pytest.raises(KeyError, match="holds adapter 'zz'"):
        bank.add_peft("zz", pm)
    x = torch.randint(0, V, (6, 11), generator=torch.Generator().manual_seed(4))
    names = ["t0", "__base__", "t2", "t1", "t0", "t2"]
    with torch.no_grad():
        theirs = pm(input_ids=x, adapter_names=names).logits
        with bank.use([None if n == "__base__" else n for n in names]):
            ours = hf(input_ids=x).logits
        plain = hf(input_ids=x).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.equal(ours[1], plain[1])  # the "__base__" row
    assert all(not torch.allclose(ours[i], plain[i], atol=1e-3) for i in (0, 2, 3))


def test_hot_swap_remove_and_slot_reuse(pair):
    base, bank, ref = pair
    x = torch.randint(0, V, (1, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        with bank.use(["c"]):
            before = base(x)
        bank.add("a", {k: (v[0], v[1], v[2]) for k, v in _weights(ref, "c").items()})
        with bank.use(["a"]):  # "a" now holds c's weights, in its old slot
            assert torch.allclose(base(x), before, atol=1e-6)
        slot = bank.slots["b"]
        bank.remove("b")
        assert "b" not in bank and bank.names() == ["a", "c"]
        bank.add("d", _weights(ref, "b"))
        assert bank.slots["d"] == slot  # the freed slot is reused
    bank.close()
    with torch.no_grad(), bank.use(["c"]):
        assert torch.equal(base(x), base.eval()(x))  # hooks gone: the bare base


def _weights(model, name):
    from week06_lora import lora_layers

    return {n: (m.lora[name].A.detach(), m.lora[name].B.detach(), m.lora[name].scaling)
            for n, m in lora_layers(model).items() if name in m.lora}


def test_memory_accounting(pair):
    base, bank, _ = pair
    per = {n: bank.adapter_bytes(n) for n in "abc"}
    C, layers = 32, bank.layers.values()
    assert per["a"] == 2 * sum(m.in_features + m.out_features for m in layers) * 4
    assert per["c"] == 4 * per["a"]  # rank 8 against rank 2
    assert bank.nbytes() >= sum(per.values()) and bank.rank == 8 and C == base.config.n_embd


@pytest.mark.parametrize("spec, match", [
    ("zzz", "not loaded"), ([("a", "x")], "name or a"), (3.5, "adapter is None"),
    ("arrow", "ArrowSpec")])
def test_bad_plans_are_clear_errors(pair, spec, match):
    _, bank, _ = pair
    with pytest.raises((KeyError, ValueError), match=match):
        bank.plan([spec])


def test_bad_weights_and_wrong_batch_are_clear_errors(pair):
    base, bank, ref = pair
    w = _weights(ref, "a")
    layer = next(iter(w))
    with pytest.raises(ValueError, match="do not fit"):
        bank.add("x", {layer: (w[layer][0].t(), w[layer][1], 1.0)})
    with pytest.raises(KeyError, match="does not target"):
        bank.add("x", {"nope": w[layer]})
    with pytest.raises(ValueError, match="top_k"):
        ArrowSpec(("a", "b"), top_k=3)
    with bank.use(["a", "b"]), pytest.raises(RuntimeError, match="plan has 2 rows"):
        base(torch.zeros(3, 4, dtype=torch.long))
    assert as_stack({"a": 2}) == [("a", 2.0)] and as_stack(None) == []


def test_hooks_are_on_the_layers_only_while_a_plan_adapts_rows(pair):
    """A bare batch runs the layers as they are (no hook: week04's one-token fast path); a
    plan with adapters hooks them for its life; a plan that grows by an adapter row (rows
    joining) hooks them, one whose adapter rows leave unhooks them; close() is for good."""
    from week10_hydra.plan import Plan

    base, bank, _ = pair
    layer = next(iter(bank.layers.values()))
    hooked = lambda: bool(layer._forward_hooks)  # noqa: E731
    assert not hooked()
    with bank.use([None, None]):
        assert not hooked()
    with bank.use(["a", None]):
        assert hooked()
    assert not hooked()
    plan = bank.plan([None, None])
    with bank.use(plan):
        assert not hooked()
        plan.extend(bank.plan(["b"]))  # a row with an adapter joins
        assert hooked() and plan.batch_size == 3 and isinstance(plan, Plan)
        x = torch.randint(0, V, (3, 6), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            joined = base(x)
        plan.keep(torch.tensor([0, 1]))  # the adapter row finished
        assert not hooked()
    with torch.no_grad(), bank.use([None, None, "b"]):
        assert torch.allclose(joined, base(x), atol=1e-6)  # the grown plan is that plan
    bank.close()
    with bank.use(["a"]):
        assert not hooked()
