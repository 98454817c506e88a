"""Stacking: a combined adapter is the weighted stack (and PEFT's ``add_weighted_adapter``
"cat"), a population's losses in one forward are each candidate's own, our CMA-ES against
pycma, and LoraHub against nevergrad's NGOpt on two-skill adapters trained here."""

import copy

import numpy as np
import pytest
import torch

from week07_continual import collate, lm_loss, score_examples
from week10_hydra.bank import AdapterBank
from week10_hydra.compose import (
    CMAES,
    LoraHubConfig,
    combine,
    fewshot_losses,
    lorahub,
    lorahub_objective,
    merged_delta,
)
from week10_hydra.skills import SkillsConfig, train_skill_adapters

V = 97


@pytest.fixture
def pair(abc_bank):
    base, bank, _ = abc_bank(V)
    return base, bank


# ---------------------------------------------------------------- task arithmetic


@pytest.mark.core
def test_combined_adapter_serves_the_weighted_stack(pair):
    base, bank = pair
    w = {"a": 0.7, "b": -1.3, "c": 0.4}
    assert combine(bank, "mix", w) == 2 + 4 + 8  # its rank: the sum of the ranks
    x = torch.randint(0, V, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with bank.use([w] * 3):
            stacked = base(x)
        with bank.use(["mix"] * 3):
            combined = base(x)
        with bank.use(["a"] * 3):
            one = base(x)
    assert torch.allclose(combined, stacked, atol=1e-5)
    assert not torch.allclose(combined, one, atol=1e-3)
    layer = next(iter(bank.layers))
    assert torch.allclose(bank.delta_weight("mix", layer), merged_delta(bank, w, layer),
                          atol=1e-6)


@pytest.mark.core
def test_combine_equals_peft_add_weighted_adapter_cat(make_llama):
    """PEFT's own task arithmetic (``add_weighted_adapter(..., combination_type="cat")``) on
    HF's Llama gives the logits and delta weights of our combined adapter."""
    peft = pytest.importorskip("peft")
    from week04_modern_arch_tools.hf import llama_to_hf

    hf = llama_to_hf(make_llama(V)).eval()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    pm = peft.get_peft_model(copy.deepcopy(hf), peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False), adapter_name="t0")
    pm.add_adapter("t1", peft.LoraConfig(r=2, lora_alpha=6, target_modules=targets,
                                         init_lora_weights=False))
    pm.add_weighted_adapter(["t0", "t1"], [0.6, -1.1], "mix", combination_type="cat")
    pm.set_adapter("mix")
    pm.eval()
    bank = AdapterBank(hf, targets=[n for n, m in hf.named_modules()
                                    if n.rsplit(".", 1)[-1] in targets])
    for name in ("t0", "t1"):
        bank.add_peft(name, pm)
    combine(bank, "ours", {"t0": 0.6, "t1": -1.1})
    x = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), bank.use(["ours", "ours"]):
        ours = hf(input_ids=x).logits
    with torch.no_grad():
        theirs = pm(input_ids=x).logits
    assert torch.allclose(ours, theirs, atol=1e-5)
    mname, m = next((n, m) for n, m in pm.named_modules() if hasattr(m, "lora_A"))
    layer = mname.removeprefix("base_model.model.")
    assert torch.allclose(merged_delta(bank, {"t0": 0.6, "t1": -1.1}, layer),
                          m.get_delta_weight("mix"), atol=1e-6)


@pytest.mark.core
def test_bad_weights_are_clear_errors(pair):
    _, bank = pair
    with pytest.raises(KeyError, match="not loaded"):
        combine(bank, "x", {"zzz": 1.0})
    with pytest.raises(ValueError, match="finite number"):
        combine(bank, "x", {"a": float("nan")})
    with pytest.raises(ValueError, match="non-empty"):
        combine(bank, "x", {})
    with pytest.raises(ValueError, match="optimizer"):
        LoraHubConfig(optimizer="adam")
    with pytest.raises(ValueError, match="population"):
        LoraHubConfig(budget=4, population=8)
    with pytest.raises(ValueError, match="W must be"):
        fewshot_losses(bank, bank.model, ["a", "b"], np.zeros((2, 3)), [{"ids": [1, 2, 3],
                                                                         "mask": [0, 1, 1]}])


# ---------------------------------------------------------------- the objective and the ES


@pytest.mark.core
def test_a_population_in_one_forward_equals_each_candidate_alone(pair):
    base, bank = pair
    g = torch.Generator().manual_seed(2)
    exs = [{"ids": torch.randint(0, V, (n,), generator=g).tolist(), "mask": [0] * 3 + [1] * (n - 3)}
           for n in (8, 12, 6, 10)]
    W = np.random.default_rng(0).uniform(-1.5, 1.5, (5, 3))
    got = fewshot_losses(bank, base, ["a", "b", "c"], W, exs, max_rows=8)  # 2 per forward
    x, y = collate(exs)
    for p in range(5):
        with torch.no_grad(), bank.use([dict(zip("abc", W[p].tolist()))] * len(exs)):
            assert abs(float(got[p]) - float(lm_loss(base, x, y))) < 1e-5
    assert float(got.std()) > 1e-3  # different weights, different losses


@pytest.mark.stretch
def test_our_cmaes_converges_like_pycma_on_an_ill_conditioned_ellipsoid():
    """Both reach the optimum of a rotated-free ellipsoid (condition 1e4) in 5-D within the
    same evaluation budget; ours ends within a factor of pycma's step count."""
    cma = pytest.importorskip("cma")
    n, shift = 5, np.linspace(-0.5, 0.5, 5)

    def f(x):
        return float(sum(10 ** (4 * i / (n - 1)) * (xi - si) ** 2
                         for i, (xi, si) in enumerate(zip(x, shift))))

    es, evals = CMAES(np.zeros(n), 0.5, seed=0), 0
    while evals < 4000 and min(f(es.mean), 1.0) > 1e-10:
        X = es.ask()
        es.tell(X, [f(x) for x in X])
        evals += len(X)
    ref = cma.CMAEvolutionStrategy(np.zeros(n), 0.5, {"seed": 1, "verbose": -9,
                                                      "ftarget": 1e-10, "maxfevals": 4000})
    ref.optimize(f)
    assert f(es.mean) < 1e-10 and ref.result.fbest < 1e-10
    assert evals <= 2 * ref.result.evaluations


# ---------------------------------------------------------------- LoraHub on two skills


@pytest.fixture(scope="module")
def skills(chat_tok, make_llama):
    model = make_llama(chat_tok.vocab_size)
    # adapter_lr 2e-2: with chat_tok refitted on week04's data of 2026-12-03 (string answers
    # are the printed values) adapter B at 1e-2 learnt the frame but its final "." on no example
    cfg = SkillsConfig(n_countries=12, base_steps=150, adapter_steps=120, adapter_lr=2e-2,
                       progress=False)
    bank, tasks = train_skill_adapters(model, chat_tok, cfg)
    return model, bank, tasks


@pytest.mark.core
def test_each_adapter_learnt_its_own_skill(skills):
    model, bank, tasks = skills

    def em(spec, exs):
        with bank.use([spec] * len(exs)):
            return score_examples(model, exs, "exact_match", batch_size=len(exs))

    assert em("A", tasks.knowledge.test) > em(None, tasks.knowledge.test)
    assert em("B", tasks.format.test) > em(None, tasks.format.test)


@pytest.mark.core
def test_lorahub_reaches_nevergrads_loss_and_beats_uniform_and_task_arithmetic(skills):
    model, bank, tasks = skills
    shots = tasks.both.test[:8]
    res = {opt: lorahub(bank, model, ["A", "B"], shots, LoraHubConfig(
        budget=40, optimizer=opt, progress=False)) for opt in ("cma", "ngopt")}
    (uniform, one_one), _ = lorahub_objective(bank, model, ["A", "B"], [[0.5, 0.5], [1, 1]],
                                              shots, alpha=0.05)
    ours, theirs = res["cma"], res["ngopt"]
    assert ours.loss <= theirs.loss + 0.05  # within a small margin of NGOpt (or better)
    assert ours.loss < uniform and theirs.loss < uniform
    assert ours.loss <= one_one
    assert ours.evaluations == theirs.evaluations == 36 and ours.history == sorted(ours.history, reverse=True)
    (again,), _ = lorahub_objective(bank, model, ["A", "B"], [list(ours.weights.values())],
                                    shots, alpha=0.05)
    assert abs(again - ours.loss) < 1e-5  # the reported loss is the weights' objective
    # measured: exact match on the two-skill set stays 0 for every mix at this size (see
    # benchmarks/stacking.py), but on held-out two-skill examples the found stack's loss beats
    # each adapter alone
    held = tasks.both.test[8:]
    alone = fewshot_losses(bank, model, ["A", "B"], [[1, 0], [0, 1]], held)
    stack = fewshot_losses(bank, model, ["A", "B"], [list(ours.weights.values())], held)
    assert float(stack[0]) < float(alone.min())
