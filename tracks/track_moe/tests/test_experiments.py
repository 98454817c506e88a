"""The experiment script end to end at the "test" preset (seconds), in tmp_path."""

import json
import math

import pytest

from track_moe.experiments import PRESETS, main, topic_of

pytestmark = pytest.mark.stretch


def test_topic_of_document_names():
    assert topic_of("topic:assert") == "topic"
    assert topic_of("doc:email.message.Message") == "email"


def test_test_preset_writes_tables_and_plots(tmp_path, capsys):
    assert main(["--preset", "test", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert list(res["arms"]) == ["dense continued", "MoE upcycled", "MoE from scratch"]
    # the upcycled MoE starts exactly where the dense checkpoint is (renormalised top-k)
    assert res["arms"]["MoE upcycled"]["start_bpb"] == pytest.approx(res["dense_start_bpb"], abs=1e-4)
    assert res["arms"]["dense continued"]["start_bpb"] == pytest.approx(res["dense_start_bpb"], abs=1e-6)
    assert res["arms"]["MoE from scratch"]["start_bpb"] > res["dense_start_bpb"]
    assert all(math.isfinite(a["val_bpb"]) for a in res["arms"].values())
    assert set(res["collapse"]) == {"no balancing", "aux loss", "bias update (V3)"}
    for f in ("upcycle.png", "topics_upcycled.png", "topics_scratch.png", "collapse.png"):
        assert (tmp_path / f).stat().st_size > 1000, f
    assert "| MoE upcycled |" in capsys.readouterr().out
    assert PRESETS["tiny"].extra_steps > PRESETS["test"].extra_steps
