"""GRPO against TRL 1.16's own GRPOTrainer._compute_loss, plus the pieces around it.

- the loss of every aggregation (grpo, bnpo, dr_grpo, dapo), with and without the
  KL term, equals TRL's method on the same tokens, and so do the gradients;
- ``group_advantages`` equals TRL's formula (its ``nanstd``, its 1e-4) on a
  worked example;
- tokens a tool forced in get no gradient and do not move the loss;
- a bandit (reward for a digit as the first token) improves through week03's Trainer;
- ``RolloutLoader`` hands one rollout back ``num_iterations`` times and resumes exactly.
"""

from __future__ import annotations

import math

import datasets
import pytest
import torch

from shared import load_checkpoint, save_checkpoint
from week03_training import TrainConfig, Trainer
from week04_modern_arch_tools import ToolRun
from week09_alignment import grpo as G
from week09_alignment.grpo import (
    GRPOConfig,
    GRPOLoss,
    RolloutLoader,
    completion_logps,
    group_advantages,
    grpo_loss,
    sample_groups,
)

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def tiny(arith_tok, make_llama):
    return make_llama(arith_tok), arith_tok


# ---------------------------------------------------------------- the loss vs TRL


def _trl_trainer(hf, tok, tmp_path, loss_type, beta, temperature, max_len, kl_correction=True):
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    from week09_alignment.hf_tokenizer import to_hf_tokenizer
    args = TRLConfig(output_dir=str(tmp_path / "trl"), report_to="none", loss_type=loss_type,
                     beta=beta, num_generations=2, max_completion_length=max_len,
                     per_device_train_batch_size=4, use_cpu=True, temperature=temperature,
                     epsilon=0.2, epsilon_high=0.28, use_bias_correction_kl=kl_correction,
                     bf16=False)  # fp32: no autocast
    if beta:  # TRL loads its reference model from the policy's config path: a local folder
        hf.save_pretrained(tmp_path / "hf")
        hf.config._name_or_path = str(tmp_path / "hf")
    ds = datasets.Dataset.from_dict({"prompt": ["2 + 2", "3 * 4"]})
    trainer = GRPOTrainer(model=hf, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                          args=args, train_dataset=ds, processing_class=to_hf_tokenizer(tok))
    trainer.current_gradient_accumulation_steps = 1  # what HF's loop sets with no accumulation
    return trainer


def _inputs(model, tok, temperature):
    """Equal-length prompts, right-padded completions of lengths 6, 4, 3, 5, a tool span,
    old/ref log-probs off the current ones (so both clip sides fire)."""
    g = torch.Generator().manual_seed(1)
    N, Tp, Tc = 4, 5, 6
    prompt = torch.randint(3, tok.vocab_size, (N, Tp), generator=g)  # (N, Tp)
    comp = torch.randint(3, tok.vocab_size, (N, Tc), generator=g)    # (N, Tc)
    lengths = torch.tensor([6, 4, 3, 5])
    cmask = (torch.arange(Tc)[None] < lengths[:, None]).long()  # (N, Tc)
    tmask = torch.ones(N, Tc, dtype=torch.long)
    tmask[0, 1:3] = 0  # a forced tool output
    ids = torch.cat([prompt, comp], 1)  # (N, Tp + Tc)
    pad = torch.zeros(N, dtype=torch.long)
    with torch.no_grad():
        cur = completion_logps(model, ids, pad, Tp, temperature)  # (N, Tc)
    old = cur + 0.4 * torch.randn(N, Tc, generator=g)
    ref = cur + 0.3 * torch.randn(N, Tc, generator=g)
    adv = torch.tensor([1.2, -0.7, 0.5, -1.1])
    return dict(prompt_ids=prompt, prompt_mask=torch.ones_like(prompt), completion_ids=comp,
                completion_mask=cmask, tool_mask=tmask, advantages=adv,
                old_per_token_logps=old, ref_per_token_logps=ref,
                num_items_in_batch=(cmask * tmask).sum()), ids, pad, Tp


@pytest.mark.parametrize("beta,kl_correction", [(0.0, True), (0.05, True), (0.05, False)])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_loss_and_grads_match_trl(tiny, tmp_path, loss_type, beta, kl_correction):
    model, tok = tiny
    temperature, max_len = 0.7, 8
    hf = model.to_hf()
    trainer = _trl_trainer(hf, tok, tmp_path, loss_type, beta, temperature, max_len, kl_correction)
    inputs, ids, pad, Tp = _inputs(model, tok, temperature)
    if beta == 0:
        inputs.pop("ref_per_token_logps")
    hf.train()
    hf.zero_grad()
    theirs = trainer._compute_loss(hf, inputs)
    theirs.backward()

    cfg = GRPOConfig(group_size=2, loss_type=loss_type, beta=beta, temperature=temperature,
                     max_new_tokens=max_len, epsilon=0.2, epsilon_high=0.28,
                     kl_ratio_correction=kl_correction)
    model.zero_grad()
    logps = completion_logps(model, ids, pad, Tp, temperature)  # (N, Tc)
    mask = inputs["completion_mask"] * inputs["tool_mask"]
    ours, metrics = grpo_loss(logps, inputs["old_per_token_logps"], inputs["advantages"], mask,
                              inputs.get("ref_per_token_logps"), cfg, inputs["num_items_in_batch"])
    ours.backward()
    assert abs(ours.item() - theirs.item()) < 1e-5, (ours.item(), theirs.item())
    assert metrics["clip_low"] > 0 and metrics["clip_high"] > 0  # both clip sides were exercised
    trl_clip = trainer._metrics["train"]["clip_ratio/region_mean"][-1]
    assert abs(metrics["clip_ratio"] - trl_clip) < 1e-6
    if beta:
        assert abs(metrics["kl"] - trainer._metrics["train"]["kl"][-1]) < 1e-5
    pairs = [(model.tok_emb.weight, hf.model.embed_tokens.weight), (model.lm_head.weight, hf.lm_head.weight),
             (model.blocks[0].attn.proj.weight, hf.model.layers[0].self_attn.o_proj.weight),
             (model.blocks[1].mlp.proj.weight, hf.model.layers[1].mlp.down_proj.weight)]
    for a, b in pairs:
        assert a.grad.abs().max() > 0
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------- advantages


def test_group_advantages_worked_example():
    """Rewards [1, 0, 0, 1 | 1, 1, 1, 0], G = 4: group means 0.5, 0.75; Bessel stds
    sqrt(1/3) = 0.57735 and 0.5, so the group-scaled advantages are 0.5 / 0.57745 = 0.86588
    (+-) and 0.25 / 0.5001 = 0.49990, -0.75 / 0.5001 = -1.49970."""
    from trl.trainer.utils import nanstd
    r = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0])
    grouped = r.view(-1, 4)
    mean = grouped.mean(1).repeat_interleave(4)
    want_group = (r - mean) / (nanstd(grouped, dim=1).repeat_interleave(4) + 1e-4)
    torch.testing.assert_close(group_advantages(r, 4, "group"), want_group)
    torch.testing.assert_close(group_advantages(r, 4, "batch"), (r - mean) / (nanstd(r) + 1e-4))
    torch.testing.assert_close(group_advantages(r, 4, "none"), r - mean)
    got = group_advantages(r, 4, "group")
    assert abs(got[0].item() - 0.5 / (math.sqrt(1 / 3) + 1e-4)) < 1e-5
    assert abs(got[7].item() - (-0.75 / 0.5001)) < 1e-5
    same = group_advantages(torch.ones(4), 4)  # a group that all agree carries no signal
    assert torch.equal(same, torch.zeros(4))
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.ones(5), 4)
    with pytest.raises(ValueError, match="valid: group, batch, none"):
        group_advantages(r, 4, "std")


# ---------------------------------------------------------------- the tool mask


def test_forced_tool_tokens_get_no_gradient(tiny, monkeypatch):
    """Scripted runs whose middle tokens a tool forced: sample_groups masks them, and
    perturbing their log-probs changes neither the loss nor any other gradient."""
    model, tok = tiny

    def fake_generate(model, tokenizer, prompts, tools, **kw):
        runs = []
        for i, _ in enumerate(prompts):
            n = 5 + i % 3
            ids = [10 + (i + j) % 50 for j in range(n)]
            forced = [1 <= j <= 2 for j in range(n)]
            runs.append(ToolRun(prompt=[1, 2, 3] + [4] * (i % 2), ids=ids, forced=forced, finished=True))
        return runs

    monkeypatch.setattr(G, "generate_with_tools", fake_generate)
    cfg = GRPOConfig(group_size=2, max_new_tokens=8)
    examples = [{"prompt": "a"}, {"prompt": "b"}]
    ro = sample_groups(model, tok, examples, cfg, {}, seed=0,
                       reward_fn=lambda ex, run: float(len(run.ids) % 2))
    assert ro.tool_mask[:, 1:3].eq(0).all() and ro.tool_mask[:, 0].eq(1).all()
    assert ro.pad.tolist() == [1, 0, 1, 0]  # prompts of 3 and 4 tokens, left-padded to 4
    batch = ro.batch()
    loss_fn = GRPOLoss(cfg)
    logps = completion_logps(model, batch["ids"], batch["pad"], batch["prompt_len"]).detach()
    logps.requires_grad_(True)
    old = batch["old_logps"] + 0.3  # off-policy, so the ratio is not 1
    mask = batch["completion_mask"] * batch["tool_mask"]
    loss, _ = grpo_loss(logps, old, batch["advantages"], mask, None, cfg, batch["num_items"])
    loss.backward()
    forced = batch["completion_mask"].bool() & ~batch["tool_mask"].bool()
    assert logps.grad[forced].abs().max() == 0
    assert logps.grad[mask.bool()].abs().max() > 0
    bumped = logps.detach().clone()
    bumped[forced] += 5.0
    loss2, _ = grpo_loss(bumped, old, batch["advantages"], mask, None, cfg, batch["num_items"])
    assert loss2.item() == loss.item()
    full, _ = loss_fn(model, batch)  # the Trainer loss runs on the same batch
    assert torch.isfinite(full)


# ---------------------------------------------------------------- a real run: the bandit


_BANDIT = [{"prompt": [{"role": "user", "content": q}]}
           for q in ("Say a number.", "Pick one.", "What now?", "Go.")]


def _train_cfg(steps, lr, **kw):
    return TrainConfig(steps=steps, lr=lr, warmup_steps=0, schedule="constant", weight_decay=0.0,
                       eval_every=0, progress=False, **{"ckpt_every": 0, "save_final": False,
                                                        "write_metrics": False, **kw})


def test_bandit_reward_rises_through_the_trainer(tiny, make_llama, tmp_path):
    """Reward 1 when the first sampled token is a digit (10 of 300 tokens, p ~ 0.03 at the
    random init). 30 GRPO steps (G = 8, 4 prompts, mu = 2, lr 1e-2) through week03's Trainer;
    the exact expected reward (the softmax mass on the digits) rises well above its start
    (0.033 -> 0.73 measured)."""
    from week04_modern_arch_tools import render_for_completion
    _, tok = tiny
    model = make_llama(tok)  # a fresh one: the module's may have trained
    digits = sorted({tok.encode(str(d))[0] for d in range(10)})

    @torch.no_grad()
    def expected_reward():
        ps = [torch.softmax(model(torch.tensor([render_for_completion(ex["prompt"], tok)]))[0, -1],
                            -1)[digits].sum().item() for ex in _BANDIT]
        return sum(ps) / len(ps)

    cfg = GRPOConfig(group_size=8, prompts_per_step=4, max_new_tokens=2, num_iterations=2,
                     lr=1e-2, steps=30)
    loader = RolloutLoader(model, tok, _BANDIT, cfg, {}, seed=0,
                           reward_fn=lambda ex, run: float(bool(run.ids) and run.ids[0] in digits))
    trainer = Trainer(model, loader, _train_cfg(cfg.steps, cfg.lr), loss_fn=GRPOLoss(cfg),
                      run_dir=tmp_path / "run")
    before = expected_reward()
    trainer.fit()
    after = expected_reward()
    assert before < 0.1 and after > before + 0.25, (before, after)
    assert loader.rollouts == cfg.steps // cfg.num_iterations


# ---------------------------------------------------------------- the loader and resume


def test_rollout_loader_reuses_and_resumes(tiny, tmp_path):
    """mu = 2: batches 1 and 2 are one rollout, batch 3 a fresh one. A loader rebuilt from a
    checkpointed state_dict (shared's checkpoint IO, as the Trainer writes it) gives the
    same next batches; the Trainer killed at step 2 and resumed ends with the same weights."""
    model, tok = tiny
    cfg = GRPOConfig(group_size=2, prompts_per_step=2, max_new_tokens=3, num_iterations=2)
    reward_fn = lambda ex, run: float(len(run.ids) % 2)  # noqa: E731
    a = RolloutLoader(model, tok, _BANDIT, cfg, {}, seed=3, reward_fn=reward_fn)
    b1, b2, b3 = a.next_batch(), a.next_batch(), a.next_batch()
    assert b1["old_logps"] is b2["old_logps"] and not torch.equal(b1["ids"], b3["ids"])
    save_checkpoint(tmp_path / "loader.safetensors", a.state_dict())
    state, _ = load_checkpoint(tmp_path / "loader.safetensors")
    want = [a.next_batch() for _ in range(3)]
    b = RolloutLoader(model, tok, _BANDIT, cfg, {}, seed=99, reward_fn=reward_fn)
    b.load_state_dict(state)
    for w, g in zip(want, [b.next_batch() for _ in range(3)]):
        assert w.keys() == g.keys()
        for k in w:
            assert torch.equal(torch.as_tensor(w[k]), torch.as_tensor(g[k])), k

    import copy
    init = copy.deepcopy(model)

    def trainer(run_dir, steps):
        m = copy.deepcopy(init)
        loader = RolloutLoader(m, tok, _BANDIT, cfg, {}, seed=0, reward_fn=reward_fn)
        return m, Trainer(m, loader, _train_cfg(steps, 1e-2, ckpt_every=2, save_final=True),
                          loss_fn=GRPOLoss(cfg), run_dir=run_dir)

    m_ref, t_ref = trainer(tmp_path / "ref", 4)
    t_ref.fit()
    _, t_kill = trainer(tmp_path / "kill", 4)
    t_kill.fit(steps=3)  # stops mid-rollout (mu = 2): step 4 must reuse the saved rollout
    m_res, t_res = trainer(tmp_path / "kill", 4)
    assert t_res.resume() == 3
    t_res.fit()
    for (n, p), q in zip(m_ref.named_parameters(), m_res.parameters()):
        assert torch.equal(p, q), n


# ---------------------------------------------------------------- the command


def test_pass_at_k_equals_counting_subsets():
    """pass@k is the share of k-subsets of the n samples that hold a correct one: n = 4,
    c = 1, k = 2 gives 1 - C(3, 2) / C(4, 2) = 0.5, counted here over all 6 pairs."""
    from itertools import combinations

    from week09_alignment.grpo_train import pass_at_k
    for n, c, k in [(4, 1, 2), (8, 3, 4), (5, 0, 3), (6, 6, 1), (7, 2, 7)]:
        flags = [1] * c + [0] * (n - c)
        subsets = list(combinations(range(n), k))
        want = sum(any(flags[i] for i in s) for s in subsets) / len(subsets)
        assert abs(pass_at_k(n, c, k) - want) < 1e-12
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


def test_command_smoke(tiny, tmp_path, monkeypatch):
    """``main`` end to end in smoke mode from a saved stage: eval.json with both measures and
    their intervals, metrics.jsonl with the reward curve's columns."""
    from week09_alignment.common import save_stage
    from week09_alignment.grpo_train import main
    monkeypatch.setenv("NANOCHAT_SMOKE", "1")
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    model, tok = tiny
    save_stage(tmp_path / "init", model, tok, {"stage": "test"})
    out = tmp_path / "grpo"
    assert main(["--init", str(tmp_path / "init"), "--out", str(out), "--no-progress",
                 "--beta", "0.04"]) == 0
    result = __import__("json").loads((out / "eval.json").read_text())
    from week09_alignment.grpo_train import PRESETS
    k = f"pass@{PRESETS['tiny'].grpo.group_size}"  # k = G, the preset's group size
    assert {"exact_match", k} <= result.keys()
    assert len(result[k]["ci95"]) == 2
    rows = [__import__("json").loads(x) for x in
            (out / "train" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward_mean" in r]
    assert len(steps) == 2 and all("kl" in r and "clip_ratio" in r for r in steps)
