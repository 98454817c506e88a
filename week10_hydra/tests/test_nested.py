"""Nested LoRA: a domain -> task -> user chain trained child over frozen parents, served through
the library equal to week06 with the chain active; resolve()'s errors on broken hierarchies."""

import copy
import json

import pytest
import torch

from week06_lora import lora_state_dict, set_active_adapters
from week07_continual import collate, lm_loss, make_skills_stream
from week10_hydra.bank import AdapterBank
from week10_hydra.library import AdapterLibrary
from week10_hydra.nested import NestedConfig, train_child

CFG = NestedConfig(r=4, alpha=8, steps=30, lr=1e-2, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def chain(chat_tok, make_llama, tmp_path_factory):
    """domain (capitals) -> domain/task (currencies) -> domain/task/user (national animals),
    each trained for 30 steps over its frozen parents; the parents' weights are snapshot
    right after each was trained."""
    stream = make_skills_stream(chat_tok, variant="facts", n_facts=24)
    data = {t.name: t.train for t in stream.tasks}
    base = make_llama(chat_tok.vocab_size)
    library = AdapterLibrary(tmp_path_factory.mktemp("nested"), AdapterBank(base))
    trained, snapshots, parent = {}, {}, None
    for child, task in (("domain", "capital"), ("task", "currency"), ("user", "new_facts")):
        res = train_child(base, library, parent, child, data[task], CFG)
        trained[res.name] = res
        snapshots[res.name] = {k: v.clone() for k, v in lora_state_dict(res.model, res.name).items()}
        parent = res.name
    return base, library, trained, snapshots, data["new_facts"]


@pytest.mark.core
def test_parents_stay_bit_identical_while_children_train(chain):
    _, library, trained, snapshots, _ = chain
    user = trained["domain/task/user"]
    assert user.chain == ["domain", "domain/task", "domain/task/user"]
    for parent in ("domain", "domain/task"):
        held = lora_state_dict(user.model, parent)
        assert held.keys() == snapshots[parent].keys()
        assert all(torch.equal(held[k], snapshots[parent][k]) for k in held)
    assert all(not p.requires_grad for n, p in user.model.named_parameters()
               if ".lora.domain/task/user." not in n)
    # the children did train (B starts at zero)
    assert all(bool(v.abs().sum() > 0) for k, v in snapshots["domain/task/user"].items()
               if k.endswith(".B"))
    assert library.meta("domain/task/user")["parent"] == "domain/task"
    assert library.meta("domain/task/user")["kind"] == "nested-lora"


@pytest.mark.core
def test_served_chain_equals_week06_with_the_chain_active_and_differs_from_the_leaf(chain):
    base, library, trained, _, user_examples = chain
    x, _ = collate(user_examples[:4])
    ref = trained["domain/task/user"].model.eval()
    with torch.no_grad():
        with library.bank.use(library.plan(["domain/task/user"] * 4)):
            served = base(x)
        set_active_adapters(ref, ["domain", "domain/task", "domain/task/user"])
        assert torch.allclose(served, ref(x), atol=1e-5)
        with library.bank.use(library.bank.plan(["domain/task/user"] * 4)):  # no parents
            leaf = base(x)
    assert not torch.allclose(leaf, served, atol=1e-3)


@pytest.mark.core
def test_the_user_adapter_lowers_its_own_loss_below_its_parent_chain(chain):
    base, library, _, _, user_examples = chain
    x, y = collate(user_examples)
    with torch.no_grad():
        with library.bank.use(library.plan(["domain/task"] * len(x))):
            parents = float(lm_loss(base, x, y))
        with library.bank.use(library.plan(["domain/task/user"] * len(x))):
            nested = float(lm_loss(base, x, y))
    assert nested < parents - 0.1


@pytest.fixture
def small(make_llama, random_adapters, tmp_path):
    base = make_llama(97)
    ref = random_adapters(copy.deepcopy(base), ["a", "a/b", "a/b/c"])
    library = AdapterLibrary(tmp_path / "lib", AdapterBank(base))
    for n in ("a", "a/b", "a/b/c"):
        library.save(n, ref)
    return base, library


@pytest.mark.core
@pytest.mark.parametrize("name", ["", "a//b", "/a", "a/", "a.b", "a b", "arrow", "__base__", 3])
def test_resolve_refuses_bad_names(small, name):
    _, library = small
    with pytest.raises(ValueError, match="adapter name must be a path"):
        library.resolve(name)


@pytest.mark.core
def test_resolve_reports_missing_adapters_ancestors_and_cycles(small, make_llama):
    base, library = small
    assert library.resolve("a/b/c") == [("a", 1.0), ("a/b", 1.0), ("a/b/c", 1.0)]
    with pytest.raises(KeyError, match="'a/x' is not in the library"):
        library.resolve("a/x")
    root = library.store.root
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["adapters"]["a"]["meta"]["parent"] = "a/b/c"  # a hand-edited manifest
    (root / "manifest.json").write_text(json.dumps(manifest))
    cyclic = AdapterLibrary(root, AdapterBank(make_llama(97)))
    with pytest.raises(ValueError, match="cycle through 'a/b' .parent links: a/b -> a -> a/b/c -> a/b"):
        cyclic.resolve("a/b")
    with pytest.raises(ValueError, match="cycle"):
        cyclic.plan(["a"])
    library.store.delete("a")  # behind the library's back: "a/b" loses its parent
    with pytest.raises(KeyError, match="missing ancestor 'a'"):
        library.resolve("a/b/c")
    with pytest.raises(KeyError, match="missing ancestor"):
        library.ensure(["a/b"])


@pytest.mark.core
def test_train_child_refuses_bad_input(small, chat_tok):
    base, library = small
    ex = make_skills_stream(chat_tok, variant="facts", n_facts=4).tasks[0].train
    with pytest.raises(ValueError, match="one path segment"):
        train_child(base, library, "a", "b/c", ex, CFG)
    with pytest.raises(KeyError, match="not in the library"):
        train_child(base, library, "zzz", "c", ex, CFG)
    with pytest.raises(ValueError, match="needs training examples"):
        train_child(base, library, "a", "d", [], CFG)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        NestedConfig(steps=0)
