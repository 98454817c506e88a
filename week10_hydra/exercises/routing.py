"""Week 10 exercise, routing: Arrow's per-token routing weights (Ostapenko et al. 2024).

Arrow routes every token of every layer to the adapters of a library without training a
router. Each adapter's prototype in a layer is the top right singular vector v_e of its
update s B A (the input direction it changes most; the bank computes them). A token's
affinity to adapter e is |x . v_e| (a singular vector's sign is arbitrary, hence the
absolute value), the top-k affinities are kept, and a softmax at a temperature turns them
into the mixing weights of those k adapters' outputs for that token.

Fill in ``coefficients``, then run ``make week10-exercises`` (``IMPL=solutions`` runs the
worked one). It replaces ``week10_hydra.plan.ArrowSpec.coefficients`` while the routing
tests run: the bank's Arrow against PEFT's ``create_arrow_model`` on Hugging Face's Llama
(same logits), the weights the bank applies, and Arrow rows in mixed batches.
"""

from __future__ import annotations

import torch


def coefficients(self, tok: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """(t, E) routing weights of tokens ``tok`` (t, in) over prototypes ``protos`` (E, in).

    ``self`` is the ``ArrowSpec`` (``self.top_k``, ``self.temperature``).

    1. sim = |tok @ protos^T|  (t, E)
    2. keep each row's ``top_k`` largest entries, set the others to -inf
    3. softmax(sim / temperature) along E: the kept entries share 1, the others get 0.

    Worked example: one token with sim [0.2, 0.9, 0.5], top_k = 2, temperature 1:
    the kept entries are 0.9 and 0.5, softmax gives [0, 0.5987, 0.4013].
    """
    raise NotImplementedError("not implemented yet: ArrowSpec.coefficients (|x . v|, top-k, "
                              "softmax at the temperature)")
