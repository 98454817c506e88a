"""week09_alignment: SFT, DPO and GRPO from their papers, equal to TRL, on checkable tasks.

- data: ``default_mixture`` / ``mixture_by_kind`` (``MixtureConfig``: identity, pydocs Q&A,
  week04's tool conversations, multi-turn, refusals), ``load_smoltalk``, ``load_gsm8k_sft``
  (its ``<<expr=result>>`` annotations as calculator calls)
- SFT (``sft``): ``encode``, ``PackedRows`` (best-fit packing with week01's ``segments``
  mask), ``sft_loss`` (week03 ``loss_fn``), ``run_sft``; ``python -m week09_alignment.sft``
- preference pairs (``prefs``): ``preference_pairs`` with a checkable winner, ``is_correct``,
  ``load_ultrafeedback``
- DPO (``dpo``, ``dpo_train``): ``dpo_loss`` (sigmoid, IPO, robust), ``encode_pair``,
  ``collate_pairs``, ``Reference`` (copy, LoRA disabled, precomputed), ``DPOLoss``,
  ``implicit_reward_accuracy``, ``verified_win_rate``, ``run_dpo``; ``python -m week09_alignment.dpo``;
  ``on_policy_pairs`` (``onpolicy``): the model's own samples judged by the verifier
- GRPO (``grpo``, ``rewards``, ``grpo_train``): ``group_advantages``, ``grpo_loss`` (grpo,
  bnpo, dr_grpo, dapo; k3 KL), ``sample_groups`` / ``Rollout``, ``RolloutLoader``,
  ``GRPOLoss``, ``rl_prompts``, ``reward``; ``python -m week09_alignment.grpo_train``
- ``token_logprobs``, ``sequence_logprobs``: what DPO and GRPO are computed from
- ``to_hf_tokenizer``, ``to_hf_messages``: our tokenizer and chat format for TRL
- ``alignment_tax`` (``report``): BASE / SFT / DPO / RL on one report card;
  ``python -m week09_alignment.pipeline``: the four stages end to end
"""
from week09_alignment.data import (
    MixtureConfig,
    default_mixture,
    load_gsm8k_sft,
    load_smoltalk,
    mixture_by_kind,
)
from week09_alignment.dpo import (
    DPOConfig,
    DPOLoss,
    Reference,
    collate_pairs,
    dpo_loss,
    encode_pair,
    precompute_reference,
)
from week09_alignment.dpo_train import (
    arithmetic_hits,
    implicit_reward_accuracy,
    run_dpo,
    verified_win_rate,
    verified_wins,
)
from week09_alignment.grpo import (
    GRPOConfig,
    GRPOLoss,
    LoraReference,
    Rollout,
    RolloutLoader,
    frozen_reference,
    group_advantages,
    grpo_loss,
    sample_groups,
)
from week09_alignment.hf_tokenizer import to_hf_messages, to_hf_tokenizer
from week09_alignment.logprobs import sequence_logprobs, token_logprobs
from week09_alignment.onpolicy import on_policy_pairs, run_to_message
from week09_alignment.prefs import is_correct, load_ultrafeedback, preference_pairs
from week09_alignment.report import TaxConfig, alignment_tax
from week09_alignment.rewards import RewardConfig, reward, rl_prompts
from week09_alignment.sft import PackedRows, SFTConfig, encode, run_sft, sft_loss

__all__ = [
    "MixtureConfig", "default_mixture", "mixture_by_kind", "load_smoltalk", "load_gsm8k_sft",
    "SFTConfig", "encode", "PackedRows", "sft_loss", "run_sft",
    "preference_pairs", "is_correct", "load_ultrafeedback",
    "DPOConfig", "dpo_loss", "encode_pair", "collate_pairs", "Reference", "precompute_reference",
    "DPOLoss", "implicit_reward_accuracy", "verified_win_rate", "verified_wins",
    "arithmetic_hits", "run_dpo", "on_policy_pairs", "run_to_message",
    "GRPOConfig", "group_advantages", "grpo_loss", "sample_groups", "Rollout", "RolloutLoader",
    "GRPOLoss", "frozen_reference", "LoraReference", "RewardConfig", "reward", "rl_prompts",
    "token_logprobs", "sequence_logprobs", "to_hf_tokenizer", "to_hf_messages",
    "TaxConfig", "alignment_tax",
]
