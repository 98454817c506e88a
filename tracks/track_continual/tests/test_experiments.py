"""The experiments script end to end at a tiny size: a tiny base trained into the output
folder, week12's taught facts as a stream, a week07 strategy and a track strategy in one
table, and the files it writes."""

from dataclasses import replace

import pytest

from track_continual import make_taught_stream
from track_continual.experiments import PRESETS, main, run_all

pytestmark = pytest.mark.stretch


def test_tiny_run_writes_the_table_and_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    preset = replace(PRESETS["tiny"], taught_steps=2,
                     tiny_base=replace(PRESETS["tiny"].tiny_base, tokenizer_chars=3000, steps=1))
    out = tmp_path / "out"
    # the frontier reads and tokenises pydocs (slow in a test): test_frontier.py covers it
    res = run_all(preset, out, progress=False, streams=["taught"], names=["naive", "olora"],
                  frontier=False)
    rows = res["streams"]["taught"]["rows"]
    assert [r["strategy"] for r in rows] == ["naive", "olora"]
    assert res["streams"]["taught"]["tasks"] == ["facts00", "facts01", "facts02"]
    for r in rows:
        assert len(r["R"]) == 3 and all(0 <= v <= 1 for row in r["R"] for v in row)
    assert res["frontier"] is None
    md = (out / "results.md").read_text()
    assert "| olora |" in md and "## taught (3 tasks" in md
    for f in ("results.json", "taught.png"):
        assert (out / f).stat().st_size > 0


def test_taught_stream_is_week12s_facts(tmp_path):
    from week02_bpe import BPETokenizer
    from week12_nanochat.teachdata import make_facts

    tok = BPETokenizer.train("What is my friend's parrot called? Thaol. " * 20, 256 + 9 + 20)
    s = make_taught_stream(tok, n_tasks=2, per_task=3)
    facts = make_facts(6, seed=0, split="test")
    assert s.task_names == ["facts00", "facts01"] and s.metric == "exact_match"
    ex = s.tasks[1].train[0]
    reply = [t for t, m in zip(ex["ids"], ex["mask"]) if m]
    assert facts[3].answer in tok.decode(reply)


def test_the_command_line_parses(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--preset" in capsys.readouterr().out
