"""week09_alignment: SFT, DPO and GRPO from their papers, equal to TRL, on checkable tasks.

(The public API is filled in as the modules land.)
"""
from week09_alignment.logprobs import sequence_logprobs, token_logprobs

__all__ = ["token_logprobs", "sequence_logprobs"]
