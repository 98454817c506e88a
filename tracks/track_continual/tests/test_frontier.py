"""The learning-forgetting frontier on the tiny model: one curve per method, and reading a
curve at a given gain."""

import math

import pytest

from track_continual import FrontierConfig, forgetting_at_gain, plot_frontier, run_frontier

pytestmark = pytest.mark.stretch


def test_forgetting_at_gain_interpolates_linearly():
    """Between (gain 0.2, forgetting 0.1) and (0.6, 0.3), gain 0.5 lies 3/4 of the way: 0.25."""
    curve = [(0, 0.0, 0.0), (10, 0.2, 0.1), (20, 0.6, 0.3)]
    assert forgetting_at_gain(curve, 0.5) == pytest.approx(0.25)
    assert forgetting_at_gain(curve, 0.2) == pytest.approx(0.1)
    assert math.isnan(forgetting_at_gain(curve, 0.7))


def test_frontier_runs_every_method(pretrained, pretraining_task, stream, tmp_path):
    cfg = FrontierConfig(ranks=(2, 4), steps=6, eval_every=3, batch_size=8, lora_lr=2e-2,
                         full_lr=1e-2)
    curves = run_frontier(pretrained, stream.tasks[1], pretraining_task, cfg, progress=False)
    assert list(curves) == ["lora r=2", "lora r=4", "full"]
    for c in curves.values():
        assert [p[0] for p in c] == [0, 3, 6] and c[0] == (0, 0.0, 0.0)
    # full fine-tuning at this lr learns task B; the source's accuracy can only drop
    assert curves["full"][-1][1] > 0
    assert all(0 <= f <= 1 for c in curves.values() for _, _, f in c)
    plot_frontier(curves, tmp_path / "f.png", units="exact match")
    assert (tmp_path / "f.png").stat().st_size > 0


def test_arithmetic_task_is_worked_arithmetic():
    """Every whole line of every window is a true equation, windows are ``tokens`` long with
    week07's text mask, and no test window repeats a training one."""
    from track_continual import arithmetic_task
    from week02_bpe import BPETokenizer

    tok = BPETokenizer.train("417 * 86 = 35862\n12 - 930 = -918\n5 + 5 = 10\n" * 30, 256 + 20)
    task = arithmetic_task(tok, n_train=6, n_test=3, tokens=32)
    assert task.name == "arithmetic" and task.metric == "bpb"
    assert len(task.train) == 6 and len(task.test) == 3
    checked = 0
    for ex in task.train + task.test:
        assert len(ex["ids"]) == 32 and ex["mask"] == [0] + [1] * 31
        for line in tok.decode(ex["ids"]).split("\n")[:-1]:  # the last line may be cut
            a, op, b, eq, c = line.split()
            assert eq == "=" and op in "+-*"
            assert int(c) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
            checked += 1
    assert checked >= 9
    train = {tuple(e["ids"]) for e in task.train}
    assert not train & {tuple(e["ids"]) for e in task.test}
    with pytest.raises(ValueError, match="n_train"):
        arithmetic_task(tok, 0, 3)


def test_only_frontier_runs_the_far_target_end_to_end(tmp_path, monkeypatch, capsys):
    """``--only-frontier`` at the tiny preset: no stream, the arithmetic frontier's table
    (mean [min, max] over the seeds) and figure."""
    import json
    from dataclasses import replace

    from track_continual import experiments

    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    tiny = experiments.PRESETS["tiny"]
    monkeypatch.setitem(experiments.PRESETS, "tiny", replace(
        tiny, frontier_seeds=(0, 1),
        tiny_base=replace(tiny.tiny_base, tokenizer_chars=3000, steps=1)))
    out = tmp_path / "out"
    assert experiments.main(["--only-frontier", "--out", str(out), "--no-progress",
                             "--frontier-lr", "0.01"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["streams"] == {} and res["frontier"]["target"] == "arithmetic"
    assert res["frontier"]["seeds"] == [0, 1] and len(res["frontier"]["curves"]) == 2
    assert res["frontier"]["config"]["lora_lr"] == res["frontier"]["config"]["full_lr"] == 0.01
    md = (out / "results.md").read_text()
    assert "target: worked arithmetic" in md and "| full |" in md and "## taught" not in md
    assert (out / "frontier.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        experiments.main(["--only-frontier", "--skip-frontier"])
