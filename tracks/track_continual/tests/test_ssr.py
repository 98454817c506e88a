"""Self-generated replay: templates, synthesis, SSR's refinement by the latest model, the
samples in week07's ReplayBuffer, the prompt LM targets, and the strategy on a stream."""

import copy
import random

import pytest
import torch

from shared import IGNORE_INDEX
from track_continual import (
    prompt_targets,
    refine,
    refine_buffer,
    strategy,
    synthesize,
    task_template,
)
from week07_continual import (
    ReplayBuffer,
    TrainConfig,
    collate,
    run_stream,
    score_examples,
    train_task,
)

pytestmark = pytest.mark.core


def test_template_is_what_every_prompt_shares(stream):
    t = task_template(stream.tasks[0])  # prompts [0, 1, 1, 1, key, 3], replies [answer, 4]
    assert (t.kind, t.prefix, t.suffix, t.stop, t.max_body, t.max_reply) == \
        ("chat", [0, 1, 1, 1], [3], 4, 1, 2)
    text = task_template(type(stream.tasks[0])("w", [{"ids": [7, 8, 9, 10], "mask": [0, 1, 1, 1]},
                                                      {"ids": [7, 9, 9, 11], "mask": [0, 1, 1, 1]}],
                                                [{"ids": [7, 8], "mask": [0, 1]}], "bpb"))
    assert (text.kind, text.starts, text.window) == ("text", [7], 4)


def test_refinement_is_the_latest_models_greedy_answer_and_fills_the_buffer(pretrained, stream):
    """Synthetic inputs keep their tokens; refine() writes the model's greedy reply (so the
    model scores 1.0 exact match on them: every reply token is its argmax), and refining
    again with a model that learned more replaces the replies by *its* answers."""
    task = stream.tasks[0]
    tpl = task_template(task)
    old = copy.deepcopy(pretrained)
    synth = synthesize(old, tpl, 12, temperature=1.0, seed=0)
    assert all(s["ids"][:4] == tpl.prefix and s["ids"][-1] == 3 and not any(s["mask"])
               for s in synth)
    refined = [refine(old, s, tpl) for s in synth]
    for s, r in zip(synth, refined):
        assert r["ids"][:r["n_input"]] == s["ids"] and r["n_input"] == len(s["ids"])
        assert r["mask"] == [0] * len(s["ids"]) + [1] * (len(r["ids"]) - len(s["ids"]))
        assert 1 <= len(r["ids"]) - len(s["ids"]) <= tpl.max_reply
    assert score_examples(old, refined, "exact_match") == 1.0
    buf = ReplayBuffer(20, "balanced")
    buf.add_many(refined, task.name)
    assert buf.counts() == {task.name: 12}
    # the latest model learned task A: its replies differ, and the refinement takes them
    new = copy.deepcopy(pretrained)
    train_task(new, task, TrainConfig(steps_per_task=25, lr=1e-2), random.Random(0), progress=False)
    before = [dict(e) for e in buf.examples()]
    changed = refine_buffer(new, buf, {task.name: tpl})
    after = buf.examples()
    assert changed == sum(a["ids"] != b["ids"] for a, b in zip(after, before)) and changed > 0
    assert all(a["ids"][:a["n_input"]] == b["ids"][:b["n_input"]] for a, b in zip(after, before))
    assert score_examples(new, after, "exact_match") == 1.0
    assert score_examples(old, after, "exact_match") < 1.0


def test_prompt_targets_are_the_next_prompt_tokens():
    """ids [5, 6, 7, 8] mask [0, 0, 1, 1] -> x [5, 6, 7], y [-1, 7, 8]: the one prompt token
    after the first, 6, is predicted at position 0 (position 1 already predicts the reply's
    7, which y scores); a window scored from its second token on has none."""
    x, y = collate([{"ids": [5, 6, 7, 8], "mask": [0, 0, 1, 1]},
                    {"ids": [1, 2, 3], "mask": [0, 1, 1]}])
    assert prompt_targets(x, y).tolist() == [[6, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX] * 3]


@pytest.mark.parametrize("name", ["ssr", "ssr+shared"])
def test_ssr_runs_a_stream_on_its_own_samples(pretrained, stream, tmp_path, name):
    cfg = TrainConfig(steps_per_task=5, batch_size=8, router_examples=4)
    sc, hooks = strategy(name, cfg)
    hooks.cfg.per_task = 4
    res = run_stream(pretrained, stream, sc, cfg, tmp_path, progress=False, hooks=hooks)
    assert ((res.matrix.R >= 0) & (res.matrix.R <= 1)).all()
    assert res.details["replay_counts"] == {"A": 4, "B": 4}  # written before tasks B and C
    assert all("n_input" in e for e in hooks.buffer.examples())  # synthetic, no real rows
    assert res.extra_bytes == hooks.buffer.nbytes() + (
        0 if name == "ssr" else sum(p.numel() * 4 for n, p in res.model.named_parameters()
                                    if ".lora." in n))
    assert torch.isfinite(torch.tensor(res.matrix.acc()))
