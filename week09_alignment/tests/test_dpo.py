"""DPO against TRL's own DPOTrainer, the three references, the batches, a real short run.

TRL is the reference: its ``DPOTrainer._compute_loss`` runs on a Hugging Face
export of the same tiny week04 Llama (``model.to_hf()``: same weights, same
logits), fed exactly our batch (``input_ids`` = our ids, ``completion_mask`` =
our mask, ``attention_mask`` on the real tokens), with a ``ref_model`` that is
the export of our frozen reference. Loss, weight gradients and TRL's logged
metrics must equal ours in fp32; 1e-5 relative is float32 summation-order noise
over a few hundred terms (the two models add the same products in another order).
"""

from __future__ import annotations

import copy

import pytest
import torch

from week03_training import TrainConfig
from week04_modern_arch_tools import make_tool_dataset
from week04_modern_arch_tools.hf import name_map
from week09_alignment.dpo import (
    DPOConfig,
    DPOLoss,
    Reference,
    collate_pairs,
    dpo_loss,
    encode_pair,
    precompute_reference,
)
from week09_alignment.dpo_train import implicit_reward_accuracy
from week09_alignment.logprobs import sequence_logprobs

BLOCK = 96


# ---------------------------------------------------------------- fixtures


def _pairs(convs):
    """Inline pairs in TRL's conversational format: the chosen reply is the dataset's own
    (a calculator call, its output, the right sum), the rejected one a wrong guess in text."""
    out = []
    for i, c in enumerate(convs):
        user, reply = c[0], c[1]
        answer = reply["content"][-1]["text"]
        wrong = "I think it is " + str(17 * i + 3) + "."
        out.append({"prompt": [user], "chosen": [reply],
                    "rejected": [{"role": "assistant", "content": wrong}],
                    "kind": "arithmetic", "answer": answer})
    return out


@pytest.fixture(scope="module")
def setup(arith_tok, make_llama):
    return arith_tok, make_llama(arith_tok), _pairs(make_tool_dataset("arithmetic", 200, seed=0))


def _perturbed(model, seed=1):
    """A copy of ``model`` with its weights moved a little, so policy != reference."""
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m


# ---------------------------------------------------------------- vs TRL


def _trl_trainer(hf_policy, hf_ref, tok, tmp_path, loss_type, beta, label_smoothing,
                 sft_weight=0.0):
    from datasets import Dataset
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    from week09_alignment.hf_tokenizer import to_hf_tokenizer

    types, weights = ([loss_type, "sft"], [1.0, sft_weight]) if sft_weight else ([loss_type], None)
    args = TRLConfig(output_dir=str(tmp_path), report_to="none", beta=beta, loss_type=types,
                     loss_weights=weights, label_smoothing=label_smoothing, use_cpu=True, bf16=False,
                     gradient_checkpointing=False, disable_dropout=True)
    ds = Dataset.from_dict({"prompt": ["1"], "chosen": ["2"], "rejected": ["3"]})  # unused
    return DPOTrainer(model=hf_policy, ref_model=hf_ref, args=args, train_dataset=ds,
                      processing_class=to_hf_tokenizer(tok))


@pytest.mark.core
def test_sigmoid_loss_gradients_and_metrics_equal_trl(setup, tmp_path):
    """The paper's loss (TRL's default ``sigmoid``)."""
    _check_against_trl(setup, tmp_path, "sigmoid", 0.1, 0.0)


@pytest.mark.stretch
@pytest.mark.parametrize("loss_type,beta,smoothing", [("ipo", 0.5, 0.0), ("robust", 0.2, 0.2)])
def test_ipo_and_robust_equal_trl(setup, tmp_path, loss_type, beta, smoothing):
    """IPO (TRL's per-token normalised form) and robust DPO (label smoothing 0.2)."""
    _check_against_trl(setup, tmp_path, loss_type, beta, smoothing)


@pytest.mark.core
@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_rpo_sft_term_equals_trl(setup, tmp_path, alpha):
    """RPO / DPO + NLL: TRL's ``loss_type=["sigmoid", "sft"]``, ``loss_weights=[1, alpha]``
    (the chosen rows' mean token NLL over the whole batch), loss and gradients; pairs of
    different lengths, so a mean per row would differ from TRL's mean over all tokens."""
    _check_against_trl(setup, tmp_path, "sigmoid", 0.1, 0.0, sft_weight=alpha)


def _check_against_trl(setup, tmp_path, loss_type, beta, smoothing, sft_weight=0.0):
    tok, model, pairs = setup
    ref_model = model
    policy = _perturbed(model).train()
    hf_policy, hf_ref = policy.to_hf().train(), ref_model.to_hf().eval()
    trainer = _trl_trainer(hf_policy, hf_ref, tok, tmp_path, loss_type, beta, smoothing,
                           sft_weight)

    batch = collate_pairs(pairs[:6], tok, BLOCK)
    if sft_weight:
        n = batch["mask"][:6].sum(dim=1)
        assert len(set(n.tolist())) > 1  # rows of different lengths
    cfg = DPOConfig(beta=beta, loss_type=loss_type, label_smoothing=smoothing, reference="copy",
                    sft_weight=sft_weight)
    ours, metrics = DPOLoss(cfg, Reference.make("copy", ref_model))(policy, batch)
    inputs = {"input_ids": batch["ids"], "attention_mask": batch["attention_mask"],
              "completion_mask": batch["mask"]}
    theirs = trainer.compute_loss(trainer.model, inputs)
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=0)

    ours.backward()
    theirs.backward()
    g_ours = {n: p.grad for n, p in policy.named_parameters()}
    g_theirs = {n: p.grad for n, p in trainer.model.named_parameters()}
    for a, b in name_map(policy.config.n_layer):
        torch.testing.assert_close(g_ours[a], g_theirs[b], rtol=1e-4, atol=1e-6, msg=a)
    q_rows = policy.config.n_head * policy.config.head_dim
    torch.testing.assert_close(g_ours["blocks.0.attn.qkv.weight"][:q_rows],
                               g_theirs["model.layers.0.self_attn.q_proj.weight"],
                               rtol=1e-4, atol=1e-6)

    # a reward is beta * (a difference of two fp32 sums of size |logp| ~ 100): its rounding
    # is beta * |logp| * 1e-6 (a few ulps of |logp|), not 1e-5 of the small difference
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    scale = beta * 1e-6 * max(abs(logged["logps/chosen"]), abs(logged["logps/rejected"]))
    for k in ("logps/chosen", "logps/rejected", "rewards/accuracies"):
        assert metrics[k] == pytest.approx(logged[k], rel=1e-5), k
    for k in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert metrics[k] == pytest.approx(logged[k], rel=1e-5, abs=scale), k
    if sft_weight:  # the NLL really is in both: ours = plain DPO + alpha * nll
        assert metrics["nll"] > 0
        c, r = sequence_logprobs(policy, batch["ids"], batch["mask"]).detach().chunk(2)
        rc, rr = sequence_logprobs(ref_model, batch["ids"], batch["mask"]).detach().chunk(2)
        plain, _ = dpo_loss(c, r, rc, rr, beta=beta)
        torch.testing.assert_close(ours.detach(), plain + sft_weight * metrics["nll"],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.core
def test_precomputed_reference_equals_trl_precomputed_column(setup, tmp_path):
    """TRL reads ``ref_chosen_logps`` / ``ref_rejected_logps`` from the batch when
    ``precompute_ref_log_probs``; ours come from ``precompute_reference``."""
    from datasets import Dataset
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    from week09_alignment.hf_tokenizer import to_hf_tokenizer

    tok, model, pairs = setup
    pre = precompute_reference(model, pairs[:5], tok, BLOCK)
    policy = _perturbed(model, seed=2).train()
    args = TRLConfig(output_dir=str(tmp_path), report_to="none", beta=0.1, use_cpu=True,
                     bf16=False, gradient_checkpointing=False, precompute_ref_log_probs=True)
    ds = Dataset.from_dict({"prompt": ["1"], "chosen": ["2"], "rejected": ["3"]})
    trainer = DPOTrainer(model=policy.to_hf().train(), args=args, train_dataset=ds,
                         processing_class=to_hf_tokenizer(tok))
    batch = collate_pairs(pre, tok, BLOCK)
    ours, _ = DPOLoss(DPOConfig(reference="precomputed"), Reference("precomputed"))(policy, batch)
    theirs = trainer.compute_loss(trainer.model, {
        "input_ids": batch["ids"], "attention_mask": batch["attention_mask"],
        "completion_mask": batch["mask"], "ref_chosen_logps": batch["ref_chosen"],
        "ref_rejected_logps": batch["ref_rejected"]})
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=0)


# ---------------------------------------------------------------- batches


@pytest.mark.core
def test_encode_pair_masks_the_completion_only(setup):
    """The chosen side is user turn + calculator call + tool output + text: its mask is
    week04's render mask after the prompt, so the tool output stays 0; the rows of a
    batch are the chosen sides then the rejected sides, right-padded with mask 0."""
    from week04_modern_arch_tools import render_conversation, render_for_completion
    from week04_modern_arch_tools.chat import special_ids

    tok, _, pairs = setup
    pair = pairs[0]
    enc = encode_pair(pair, tok, BLOCK)
    n = len(render_for_completion(pair["prompt"], tok))
    ids, mask = render_conversation(pair["prompt"] + pair["chosen"], tok)
    assert enc["chosen_ids"] == ids
    assert enc["chosen_mask"] == [0] * n + mask[n:]
    sp = special_ids(tok)
    o0, o1 = ids.index(sp["<|output_start|>"]), ids.index(sp["<|output_end|>"])
    assert not any(enc["chosen_mask"][o0:o1 + 1]) and all(enc["chosen_mask"][n:o0])
    assert enc["chosen_mask"][-1] == 1 and ids[-1] == sp["<|assistant_end|>"]

    batch = collate_pairs(pairs[:3], tok, BLOCK)
    assert batch["ids"].shape[0] == 6 and "ref_chosen" not in batch
    for i, p in enumerate(pairs[:3]):
        e = encode_pair(p, tok, BLOCK)
        for row, key in ((i, "chosen"), (i + 3, "rejected")):
            L = len(e[f"{key}_ids"])
            assert batch["ids"][row, :L].tolist() == e[f"{key}_ids"]
            assert batch["mask"][row, :L].tolist() == e[f"{key}_mask"]
            assert not batch["mask"][row, L:].any() and not batch["attention_mask"][row, L:].any()


@pytest.mark.core
def test_truncation_keeps_the_start_and_refuses_an_empty_completion(setup):
    tok, _, pairs = setup
    n = len(encode_pair(pairs[0], tok, BLOCK)["chosen_ids"])
    cut = encode_pair(pairs[0], tok, n - 3)
    assert len(cut["chosen_ids"]) == n - 3
    assert cut["chosen_ids"] == encode_pair(pairs[0], tok, BLOCK)["chosen_ids"][:n - 3]
    with pytest.raises(ValueError, match="block_size"):
        encode_pair(pairs[0], tok, 4)
    with pytest.raises(ValueError, match="prompt"):
        encode_pair({"prompt": [], "chosen": []}, tok, BLOCK)


@pytest.mark.core
def test_bad_config_and_loss_arguments_raise():
    with pytest.raises(ValueError, match="loss_type"):
        DPOConfig(loss_type="hinge")
    with pytest.raises(ValueError, match="reference"):
        DPOConfig(reference="ema")
    with pytest.raises(ValueError, match="label_smoothing"):
        DPOConfig(label_smoothing=0.1)  # sigmoid ignores it in TRL: refused, not silently dropped
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="chosen_tokens"):
        dpo_loss(x, x, x, x, loss_type="ipo")


# ---------------------------------------------------------------- the three references


@pytest.mark.core
def test_three_references_give_the_same_loss_at_step_zero(setup):
    from week06_lora import inject_lora

    tok, model, pairs = setup
    policy = _perturbed(model, seed=3)
    ref_base = copy.deepcopy(policy)  # the reference all three ways describe
    batch = collate_pairs(pairs[:6], tok, BLOCK)

    copy_loss, _ = DPOLoss(DPOConfig(reference="copy"), Reference.make("copy", policy))(policy, batch)
    pre = precompute_reference(ref_base, pairs[:6], tok, BLOCK)
    pre_batch = collate_pairs(pre, tok, BLOCK)
    pre_loss, _ = DPOLoss(DPOConfig(reference="precomputed"),
                          Reference.make("precomputed", policy))(policy, pre_batch)
    lora_policy = inject_lora(copy.deepcopy(policy), r=4, alpha=8)  # B = 0: same function
    lora_loss, _ = DPOLoss(DPOConfig(reference="lora"),
                           Reference.make("lora", lora_policy))(lora_policy, batch)
    # at step 0 the policy is its own reference: every log-ratio is 0, loss = log 2
    expected = torch.log(torch.tensor(2.0))
    for loss in (copy_loss, pre_loss, lora_loss):
        torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    # and the reference log-probs themselves agree across the three ways
    c = Reference.make("copy", ref_base).logps(policy, batch)
    lo = Reference.make("lora", lora_policy).logps(lora_policy, batch)
    for a, b, p in zip(c, lo, (pre_batch["ref_chosen"], pre_batch["ref_rejected"])):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a, p, rtol=1e-5, atol=1e-5)


@pytest.mark.core
def test_lora_reference_is_the_base_and_restores_adapters(setup):
    from week06_lora import inject_lora, lora_layers, set_active_adapters

    tok, model, pairs = setup
    base = copy.deepcopy(model)
    policy = inject_lora(copy.deepcopy(model), r=4, alpha=8, adapter="a")
    inject_lora(policy, targets=["attn.qkv"], r=2, alpha=4, adapter="b", freeze_base=False,
                activate=False)
    with torch.no_grad():
        for layer in lora_layers(policy).values():
            for ad in layer.lora.values():
                ad.B.normal_(0, 0.1)
    set_active_adapters(policy, ["a", "b"])
    before = {n: list(m.active) for n, m in lora_layers(policy).items()}
    batch = collate_pairs(pairs[:4], tok, BLOCK)
    ref = Reference.make("lora", policy)
    rc, rr = ref.logps(policy, batch)
    assert {n: list(m.active) for n, m in lora_layers(policy).items()} == before
    want = sequence_logprobs(base, batch["ids"], batch["mask"]).detach()
    torch.testing.assert_close(torch.cat([rc, rr]), want, rtol=1e-5, atol=1e-5)
    trained = sequence_logprobs(policy, batch["ids"], batch["mask"])
    assert not torch.allclose(trained.detach(), want)  # the adapters are back on
    assert not rc.requires_grad
    with pytest.raises(ValueError, match="LoRA"):
        Reference.make("lora", base)


# ---------------------------------------------------------------- a real run


@pytest.mark.core
def test_short_dpo_run_raises_heldout_implicit_reward_accuracy(setup, tmp_path):
    """20 steps of DPO (week03's Trainer through run_stage) on 160 pairs; on 40
    held-out pairs the implicit reward (0 for every pair before: the policy is its
    own reference, accuracy 0) then ranks most chosen replies first."""
    from shared import SampledBatches
    from week09_alignment.common import run_stage

    tok, model, _ = setup
    pairs = _pairs(make_tool_dataset("arithmetic", 200, seed=5))
    train, held = pairs[:160], pairs[160:]
    policy = copy.deepcopy(model)
    cfg = DPOConfig(beta=0.1, lr=3e-3, reference="copy")
    ref = Reference.make("copy", policy)
    before = implicit_reward_accuracy(policy, ref, held, tok, cfg.beta, block_size=BLOCK)
    enc = [encode_pair(p, tok, BLOCK) for p in train]
    loader = SampledBatches(enc, 8, lambda b: collate_pairs(b, tok, BLOCK), seed=0)
    tc = TrainConfig(steps=20, batch_size=8, block_size=BLOCK, lr=cfg.lr, warmup_steps=2,
                     eval_every=0, progress=False)
    _, trainer = run_stage(policy, tok, loader, tc, tmp_path / "dpo", loss_fn=DPOLoss(cfg, ref),
                           desc="dpo")
    after = implicit_reward_accuracy(policy, ref, held, tok, cfg.beta, block_size=BLOCK)
    print("held-out before", before, "after", after)
    assert before["accuracy"] == 0.0 and before["margin"] == 0.0
    assert after["accuracy"] >= 0.9 and after["margin"] > 0
    assert trainer.history[-1] < trainer.history[0]
    assert (tmp_path / "dpo" / "train" / "metrics.jsonl").is_file()


# ---------------------------------------------------------------- the command


@pytest.mark.stretch  # its data are prefs' synthetic pairs (Stretch)
@pytest.mark.parametrize("reference", ["lora", "precomputed"])
def test_command_writes_before_after_and_resumes(setup, tmp_path, monkeypatch, reference):
    """``main`` end to end on a tiny stage folder (3 steps, week09 prefs pairs): stage.json
    holds the figures before and after, metrics.jsonl the DPO metrics of every step, the
    saved model reloads as a plain week04 Llama (LoRA merged), and a rerun resumes."""
    import json

    from shared import load_model
    from week09_alignment.common import read_stage, save_stage
    from week09_alignment.dpo_train import main

    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    tok, model, _ = setup
    init = tmp_path / "init"
    save_stage(init, model, tok, {"stage": "test"})
    out = tmp_path / "dpo"
    argv = ["--init", str(init), "--out", str(out), "--preset", "tiny", "--steps", "3",
            "--n-train", "12", "--n-eval", "4", "--n-arith", "3", "--reference", reference,
            "--no-progress",
            "--device", "cpu"]
    assert main(argv) == 0
    meta = read_stage(out)
    for when in ("before", "after"):
        assert set(meta[when]) >= {"implicit_reward_accuracy", "verified_win_rate", "reward_margin",
                                   "arithmetic_exact"}
        assert meta[when]["n_arith"] == 3
    for k in ("verified_win_rate", "arithmetic_exact"):
        c = meta["change"][k]
        assert c["ci95"][0] <= c["delta"] <= c["ci95"][1]
        assert c["delta"] == pytest.approx(meta["after"][k] - meta["before"][k])
    assert meta["before"]["implicit_reward_accuracy"] == 0.0
    rows = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("rewards/margins" in r and "logps/chosen" in r for r in rows)
    reloaded = load_model(out / "model.safetensors")
    assert type(reloaded).__name__ == "Llama"
    assert main(argv) == 0  # resumes from step 3: nothing left to train
    assert len((out / "train" / "metrics.jsonl").read_text().splitlines()) == 3
