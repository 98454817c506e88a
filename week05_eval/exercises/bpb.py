"""Week 05 exercises, bits per byte: the tokenizer-independent loss (core ``bits_per_byte``).

Fill in ``bits_per_byte`` below, then run ``make week05-exercises``. It replaces the
``bits_per_byte`` that ``week05_eval.metrics.evaluate_ids`` calls (week02's) while its tests
run; they check it against a uniform model, whose answer is known in closed form
(``N ln V / (ln 2 * bytes)``), and against ``unigram_bpb``, which computes a unigram model's
bits per byte directly in float64. Everything around it (the windows, the model, the
cross-entropy) is the package's.

Why bytes: a loss per token depends on the tokenizer (a bigger vocabulary packs more text
into each token, so each one is harder to predict). The total loss of a text does not
depend on how it was cut; dividing it by the text's size in UTF-8 bytes, and converting
nats (natural log) to bits (log base 2), gives a number two models with different
tokenizers can be compared on.
"""

import torch


def bits_per_byte(nats: torch.Tensor, targets: torch.Tensor, token_bytes: torch.Tensor) -> float:
    """``sum(nats) / (ln 2 * sum of the bytes the targets stand for)``, as a Python float.

    - ``nats``: per-token losses in nats (``F.cross_entropy(..., reduction="none")``), any
      shape, any float dtype (``evaluate_ids`` passes float64, the tests also float32);
    - ``targets``: the token ids those losses score, same shape as ``nats`` (int64);
    - ``token_bytes``: ``(V,)`` int64, how many UTF-8 bytes token ``i`` decodes to.
      Special tokens such as ``<|bos|>`` cover 0 bytes.

    Steps:

    1. Shapes differ: ``ValueError`` naming both.
    2. Flatten both; drop the positions whose target is negative (an ``ignore_index``
       such as -1, i.e. padding) from both sums. Sum the losses in float64.
    3. ``nbytes = token_bytes[targets].sum()`` (look the byte counts up by id). A special
       token's loss still counts in the numerator, though it adds 0 bytes: the model did
       pay for predicting it.
    4. ``nbytes == 0`` (nothing but special tokens): bits per byte is undefined, raise a
       ``ValueError`` saying so. Else return ``total_nats / (math.log(2) * nbytes)``.

    Example: losses ``[ln 4, ln 4]`` on two 1-byte tokens -> ``2 ln 4 / (2 ln 2) = 2.0``
    bits per byte (a 1-in-4 guess per byte is 2 bits).
    """
    raise NotImplementedError("not implemented yet: bits_per_byte (summed nats over "
                              "ln 2 * the targets' UTF-8 bytes; see its docstring)")
