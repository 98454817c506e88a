"""Week 05 exercises, multiple choice: encoding a request the way lm-eval does (core
``encode_pair``) and scoring the choices into acc / acc_norm (core ``evaluate_mc``).

Fill in the two functions below, then run ``make week05-exercises``. ``encode_pair``
replaces ``week05_eval.scoring.encode_pair`` (everywhere the package imported it) and
``evaluate_mc`` replaces ``week05_eval.evaluate_mc`` while their tests run. The references
are EleutherAI's lm-evaluation-harness itself: its Hugging Face model (``HFLM``) encodes and
scores the same requests on the same weights, and its ``simple_evaluate`` computes acc and
acc_norm on the same task; plus an oracle model (100%) and a uniform one (chance).

The primitive both build on, already written (``week05_eval.scoring``)::

    continuation_logprobs(model, [(context_ids, continuation_ids), ...], batch_size=16)
        -> [(sum of log p(continuation token | everything before it), is_greedy, n_tokens), ...]

It scores token ids, so text must first become a pair of id lists: that is ``encode_pair``.
The tokenizer (week02's ``BPETokenizer``) has ``encode(text) -> list[int]``,
``decode(ids) -> str`` and ``bos_id`` (the ``<|bos|>`` id every training document began with).
"""

# the package's helpers, for you to use (the functions you write are not among them)
from week05_eval import scoring  # noqa: F401
from week05_eval.multiple_choice import (  # noqa: F401
    MCResult,
    MCTask,
    build_prompt,
    fewshot_examples,
)


def encode_pair(tokenizer, context: str, continuation: str, add_bos: bool = True
                ) -> tuple[list[int], list[int]]:
    """``(context_ids, continuation_ids)``, the continuation tokenized in context.

    Why not ``encode(context)`` and ``encode(continuation)`` apart: BPE merges a space with
    the word after it (``" Paris"`` is one token), and a prompt written ``"Answer: "`` would
    otherwise end in a lone space token the model never saw in training. lm-eval's
    ``_encode_pair`` (``lm_eval.api.model.TemplateLM``) fixes this, and so do you:

    1. ``continuation == ""``: ``ValueError`` (there is nothing to score).
    2. Move the context's trailing whitespace (what ``context.rstrip()`` removes: spaces,
       newlines) to the front of the continuation: ``("Answer: ", "Paris")`` becomes
       ``("Answer:", " Paris")``.
    3. ``ctx = tokenizer.encode(context)`` (``[]`` for an empty context) and
       ``whole = tokenizer.encode(context + continuation)``; the continuation's ids are
       ``whole[len(ctx):]``: the joint encoding, split where the context's tokens end.
    4. Guard: if ``whole`` does not start with ``ctx`` (the tokenizer merged across the
       boundary) or has nothing after it, use ``tokenizer.encode(continuation)`` instead.
    5. With ``add_bos`` and a tokenizer that has a ``<|bos|>``, the context ids start with
       it: ``scoring.bos_of(tokenizer)`` is ``[bos_id]`` or ``[]``. So an empty context
       still leaves ``<|bos|>`` to condition on.

    Returns ``(bos + ctx, cont)``. Example: ``("Answer: ", "Paris")`` and
    ``("Answer:", " Paris")`` both give ``([bos, *encode("Answer:")], [id of " Paris"])``.
    """
    raise NotImplementedError("not implemented yet: encode_pair (trailing whitespace to the "
                              "continuation, encode jointly, split after the context's "
                              "tokens, <|bos|> first)")


def evaluate_mc(model, tokenizer, task: MCTask, num_fewshot: int = 0, seed: int = 1234,
                batch_size: int = 16, limit: int | None = None, progress: bool = False
                ) -> MCResult:
    """Score every choice of every example by log-likelihood; accuracy three ways.

    ``task.examples`` is a list of ``MCExample(context, choices, gold)``: ``context`` ends
    where the answer starts (``"...\\nAnswer:"``), ``choices`` are continuations (``" Paris"``)
    and ``gold`` the index of the right one. The model writes nothing; it only scores.

    1. ``examples = task.examples[:limit]`` when ``limit`` is set. None: ``ValueError``;
       ``num_fewshot > 0`` with an empty ``task.fewshot_pool``: ``ValueError``.
    2. For example ``i``: the shots are
       ``fewshot_examples(task.fewshot_pool, num_fewshot, seed + i, example)`` (``[]`` when
       ``num_fewshot`` is 0); the prompt is
       ``build_prompt(example, shots, task.description, task.separator)``; one request per
       choice, ``scoring.encode_pair(tokenizer, prompt, choice)`` (or yours, above).
    3. Score all requests of all examples in ONE call,
       ``scoring.continuation_logprobs(model, requests, batch_size=batch_size)``
       (it batches them), and group the results back per example.
    4. Per example, with ``s[j]`` the summed log-prob of choice ``j`` and ``n[j]`` its
       number of tokens, pick three ways (lm-eval's metrics):

       - ``acc``: ``argmax_j s[j]``. Biased toward short choices: each extra token costs;
       - ``acc_norm``: ``argmax_j s[j] / len(choices[j])``, per CHARACTER (lm-eval's exact
         definition, independent of the tokenizer; the leading space counts);
       - ``acc_token``: ``argmax_j s[j] / n[j]``, per token.

       Ties go to the FIRST choice (a uniform model then always picks choice 0, so its
       accuracy is exactly chance when the gold index cycles). ``max(range(k), key=...)``
       does that.
    5. Return ``MCResult(task=task.name, n=len(examples), acc=..., acc_norm=...,
       acc_token=..., chance=mean of 1 / len(choices) over the examples,
       num_fewshot=num_fewshot, predictions=[the acc_norm pick per example],
       scores=[[s[0], s[1], ...] per example])``; accuracies are fractions in [0, 1].

    ``progress`` may show a tqdm bar; ignore it if you like.
    """
    raise NotImplementedError("not implemented yet: evaluate_mc (one request per choice, "
                              "score them all with continuation_logprobs, then acc / "
                              "acc_norm / acc_token with ties to the first choice)")
