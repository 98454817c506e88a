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

# Imported on first use, so ``python -m week09_alignment.<command>`` does not import its
# own module twice (runpy's warning) and ``import week09_alignment`` stays light.
_EXPORTS = {
    "data": ["MixtureConfig", "default_mixture", "mixture_by_kind", "load_smoltalk",
             "load_gsm8k_sft"],
    "sft": ["SFTConfig", "encode", "PackedRows", "sft_loss", "run_sft"],
    "prefs": ["preference_pairs", "is_correct", "load_ultrafeedback"],
    "dpo": ["DPOConfig", "dpo_loss", "encode_pair", "collate_pairs", "Reference",
            "precompute_reference", "DPOLoss"],
    "dpo_train": ["implicit_reward_accuracy", "verified_win_rate", "verified_wins",
                  "arithmetic_hits", "run_dpo"],
    "onpolicy": ["on_policy_pairs", "run_to_message"],
    "grpo": ["GRPOConfig", "group_advantages", "grpo_loss", "sample_groups", "Rollout",
             "RolloutLoader", "GRPOLoss", "frozen_reference", "LoraReference"],
    "rewards": ["RewardConfig", "reward", "rl_prompts"],
    "logprobs": ["token_logprobs", "sequence_logprobs"],
    "hf_tokenizer": ["to_hf_tokenizer", "to_hf_messages"],
    "report": ["TaxConfig", "alignment_tax"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"week09_alignment.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'week09_alignment' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
