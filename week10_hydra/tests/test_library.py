"""The adapter library: stored adapters served through the bank equal week06's layers (nested
names as their chains), LRU eviction under a budget equals a reference LRU, hot swaps, and PEFT
folders both ways on Hugging Face's Llama."""

import copy
import json
from collections import OrderedDict

import pytest
import torch

from week06_lora import (
    inject_lora,
    load_peft_adapter,
    lora_layers,
    mixed_batch,
    set_active_adapters,
)
from week10_hydra.bank import AdapterBank
from week10_hydra.library import AdapterLibrary, BudgetError, load_chain

V = 97
NESTED = ["domain", "domain/task", "domain/task/user", "other"]


@pytest.fixture
def lib(make_llama, random_adapters, tmp_path):
    """A library over a bare base holding a domain -> task -> user chain and a root "other"
    (ranks 2, 4, 4, 8), and the week06 model they were saved from (the reference)."""
    base = make_llama(V)
    ref = random_adapters(copy.deepcopy(base), NESTED, ranks=[2, 4, 4, 8])
    library = AdapterLibrary(tmp_path / "lib", AdapterBank(base))
    for n in NESTED:
        library.save(n, ref, meta={"description": f"the {n} adapter"})
    return base, library, ref


def _scaled(ref, weights: dict):
    """A week06 copy of ``ref`` with each adapter's B times its weight, those adapters active."""
    out = copy.deepcopy(ref)
    with torch.no_grad():
        for layer in lora_layers(out).values():
            for n, w in weights.items():
                layer.lora[n].B.mul_(w)
    set_active_adapters(out, list(weights))
    return out


@pytest.mark.core
def test_nested_rows_serve_their_chains_equal_to_week06(lib):
    """A nested name is its chain root -> ... -> name; a weight on it scales the whole chain;
    each row of one mixed batch equals week06 with exactly those adapters active."""
    base, library, ref = lib
    x = torch.randint(0, V, (4, 10), generator=torch.Generator().manual_seed(1))
    rows = ["domain/task/user", None, "other", {"domain/task": 0.5, "other": 2.0}]
    with torch.no_grad():
        with library.bank.use(library.plan(rows)):
            ours = base(x)
        refs = [_scaled(ref, {"domain": 1.0, "domain/task": 1.0, "domain/task/user": 1.0}),
                base, _scaled(ref, {"other": 1.0}),
                _scaled(ref, {"domain": 0.5, "domain/task": 0.5, "other": 2.0})]
        for i, m in enumerate(refs):
            assert torch.allclose(ours[i], m(x[i:i + 1])[0], atol=1e-5)
        set_active_adapters(ref, ["domain/task/user"])  # the leaf alone is something else
        assert not torch.allclose(ours[0], ref(x[:1])[0], atol=1e-3)
    assert library.resolve_stack({"domain/task/user": 2.0, "domain/task": -1.0}) == [
        ("domain", 2.0 - 1.0), ("domain/task", 2.0 - 1.0), ("domain/task/user", 2.0)]


@pytest.mark.core
def test_entries_survive_a_reopen_and_list_what_they_are(lib, make_llama):
    base, library, ref = lib
    library.ensure(["other"])
    rows = {r["name"]: r for r in library.list()}
    assert [r["parent"] for r in rows.values()] == [None, "domain", "domain/task", None]
    assert [r["rank"] for r in rows.values()] == [2, 4, 4, 8]
    assert rows["other"]["loaded"] and not rows["domain"]["loaded"]
    assert rows["other"]["bytes"] == library.bank.adapter_bytes("other")  # predicted == real
    files = list((library.store.root / "adapters").iterdir())
    assert len(files) == 4 and all(f.parent.name == "adapters" for f in files)  # flat, slugged
    again = AdapterLibrary(library.store.root, AdapterBank(make_llama(V)))
    assert again.names() == NESTED and again.meta("domain/task")["description"] == \
        "the domain/task adapter"
    assert again.resolve("domain/task/user") == library.resolve("domain/task/user")
    fresh = make_llama(V)
    assert load_chain(again, fresh, "domain/task") == ["domain", "domain/task"]
    x = torch.randint(0, V, (1, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        set_active_adapters(ref, ["domain", "domain/task"])
        assert torch.allclose(fresh(x), ref(x), atol=1e-6)  # the files hold what was saved


@pytest.mark.core
def test_save_and_delete_guard_the_hierarchy(lib):
    base, library, ref = lib
    with pytest.raises(ValueError, match="path says its parent is 'domain/task'"):
        library.save("domain/task/user", ref, parent="other")
    with pytest.raises(KeyError, match="parent 'nowhere' is not in the library"):
        library.save("nowhere/x", ref, adapter="other")
    with pytest.raises(KeyError, match="does not target"):
        library.save("head", inject_lora(copy.deepcopy(ref), targets=["lm_head"], adapter="h"),
                     adapter="h")
    with pytest.raises(ValueError, match="has children"):
        library.delete("domain/task")
    library.ensure(["domain/task/user"])
    assert library.delete("domain/task", recursive=True) == ["domain/task/user", "domain/task"]
    assert library.names() == ["domain", "other"]
    assert library.loaded() == ["domain"] and library.bank.names() == ["domain"]
    assert len(list((library.store.root / "adapters").iterdir())) == 2


@pytest.mark.core
def test_lru_eviction_under_a_budget_equals_a_reference_lru(make_llama, random_adapters,
                                                            tmp_path):
    """Six rank-4 adapters, room for three: over a random stream of batches the library holds
    and evicts exactly what an ``OrderedDict`` LRU cache would, never evicts what the batch
    needs, and every row served (reloaded from disk after an eviction) equals week06's."""
    names = [f"a{i}" for i in range(6)]
    base = make_llama(V)
    ref = random_adapters(copy.deepcopy(base), names)
    bank = AdapterBank(base)
    library = AdapterLibrary(tmp_path / "lib", bank)
    for n in names:
        library.save(n, ref)
    cost = library.cost("a0")  # every adapter costs the same: the budget holds three
    library.budget_bytes = 3 * cost
    rng = torch.Generator().manual_seed(3)
    cache, evictions = OrderedDict(), 0
    x = torch.randint(0, V, (3, 7), generator=rng)
    for _ in range(25):
        k = int(torch.randint(1, 4, (1,), generator=rng))
        batch = [names[int(i)] for i in torch.randint(0, 6, (k,), generator=rng)]
        needed = list(dict.fromkeys(batch))
        while len(cache) + len([n for n in needed if n not in cache]) > 3:  # the reference
            victim = next(n for n in cache if n not in needed)
            del cache[victim]
            evictions += 1
        for n in needed:
            cache[n] = True
            cache.move_to_end(n)
        rows = (batch * 3)[:3]
        with torch.no_grad():
            with bank.use(library.plan(rows)):
                ours = base(x)
            with mixed_batch(ref, rows):
                theirs = ref(x)
        assert library.loaded() == list(cache) and library.evictions == evictions
        assert set(needed) <= set(bank.names())
        assert sum(bank.adapter_bytes(n) for n in bank.names()) <= 3 * cost
        assert torch.allclose(ours, theirs, atol=1e-5)
    assert evictions > 5  # the stream did churn
    before = library.loaded()
    with pytest.raises(BudgetError, match="over the library's budget"):
        library.ensure(names[:4])
    assert library.loaded() == before  # a refused batch evicts nothing


@pytest.mark.core
def test_hot_swap_changes_the_served_row_and_drops_the_old_file(lib, random_adapters):
    base, library, ref = lib
    x = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(4))
    old_file = library.store.verified_path("domain/task")
    with torch.no_grad():
        with library.bank.use(library.plan(["domain/task", "other"])):
            before = base(x)
        new = random_adapters(copy.deepcopy(base), ["domain", "domain/task"], seed=7)
        library.hot_swap("domain/task", new)
        with library.bank.use(library.plan(["domain/task", "other"])):
            after = base(x)
        reference = copy.deepcopy(ref)
        for layer_ref, layer_new in zip(lora_layers(reference).values(), lora_layers(new).values()):
            layer_ref.lora["domain/task"].load_state_dict(layer_new.lora["domain/task"].state_dict())
        set_active_adapters(reference, ["domain", "domain/task"])
        assert torch.allclose(after[0], reference(x[:1])[0], atol=1e-5)
    assert not torch.allclose(after[0], before[0], atol=1e-3)
    assert torch.equal(after[1], before[1])  # the other row did not move
    assert not old_file.exists() and library.store.verified_path("domain/task").exists()
    assert library.meta("domain/task")["parent"] == "domain"  # the entry kept its place
    with pytest.raises(KeyError, match="use save"):
        library.hot_swap("nope", new)


@pytest.mark.stretch
def test_peft_folders_both_ways_on_hugging_face_llama(make_llama, random_adapters, tmp_path):
    """PEFT's own save_pretrained folder imports and serves PEFT's logits; a week06 adapter
    exported by the library loads in ``PeftModel.from_pretrained`` with the bank's logits."""
    peft = pytest.importorskip("peft")
    from week04_modern_arch_tools.hf import llama_to_hf

    llama = make_llama(V)
    hf = llama_to_hf(llama).eval()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    pm = peft.get_peft_model(copy.deepcopy(hf), peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)).eval()
    pm.save_pretrained(tmp_path / "theirs")
    ours_src = random_adapters(copy.deepcopy(hf), ["mine"], ranks=[8])
    pristine = copy.deepcopy(hf)  # before the bank hooks it
    library = AdapterLibrary(tmp_path / "lib", AdapterBank(hf))
    library.import_peft(tmp_path / "theirs", "theirs")
    library.save("mine", ours_src)
    library.export_peft("mine", tmp_path / "exported")
    back = peft.PeftModel.from_pretrained(pristine, tmp_path / "exported").eval()
    x = torch.randint(0, V, (3, 11), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        with library.bank.use(library.plan(["theirs", "mine", None])):
            served = hf(input_ids=x).logits
        plain = hf(input_ids=x).logits
        assert torch.allclose(served[0], pm(input_ids=x[:1]).logits[0], atol=1e-5)
        assert torch.allclose(served[1], back(input_ids=x[1:2]).logits[0], atol=1e-5)
    assert torch.equal(served[2], plain[2])
    assert not torch.allclose(served[0], plain[0], atol=1e-3)
    assert json.loads((tmp_path / "exported" / "adapter_config.json").read_text())["r"] == 8
    week04 = AdapterLibrary(tmp_path / "w4", AdapterBank(make_llama(V)))
    with pytest.raises(KeyError, match="does not have"):  # HF module names, week04 model
        week04.import_peft(tmp_path / "theirs", "theirs")


@pytest.mark.stretch
def test_export_on_week04_names_round_trips_through_week06s_peft_reader(lib, make_llama,
                                                                       tmp_path):
    """On our own module names PEFT cannot load the folder, so week06's PEFT reader checks it:
    the exported leaf (alone, not its chain) gives the bank's and the source's logits."""
    base, library, ref = lib
    library.export_peft("domain/task/user", tmp_path / "p")
    fresh = make_llama(V)
    load_peft_adapter(tmp_path / "p", fresh, adapter="u")
    library.ensure(["domain/task/user"])
    x = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        with library.bank.use(library.bank.plan(["domain/task/user"] * 2)):  # the leaf alone
            alone = base(x)
        set_active_adapters(ref, ["domain/task/user"])
        assert torch.allclose(fresh(x), alone, atol=1e-5)
        assert torch.allclose(fresh(x), ref(x), atol=1e-5)
    library.import_peft(tmp_path / "p", "domain/task/copy")  # and back in, under a new name
    assert library.resolve("domain/task/copy")[:2] == library.resolve("domain/task")
