"""Worked solution: SSR's refinement (the latest model's greedy output for a kept input)."""

from __future__ import annotations

import torch


@torch.no_grad()
def _greedy(model, ids, n):
    mode = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        return model.generate(torch.tensor([ids], device=dev), n, temperature=0.0)[0, len(ids):].tolist()
    finally:
        model.train(mode)


def refine(model, example: dict, template) -> dict:
    n = example["n_input"]
    inp = list(example["ids"][:n])
    if template.kind == "text":
        ids = inp + _greedy(model, inp, max(template.window - n, 1))
        return {"ids": ids, "mask": [0] + [1] * (len(ids) - 1), "n_input": n}
    reply = _greedy(model, inp, template.max_reply)
    if template.stop in reply:
        reply = reply[:reply.index(template.stop) + 1]
    return {"ids": inp + reply, "mask": [0] * n + [1] * len(reply), "n_input": n}
