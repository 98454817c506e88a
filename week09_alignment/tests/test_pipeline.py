"""The pipeline's bookkeeping: stage order, each stage starting from the one before,
finished stages skipped, ``--from`` redoing a stage and the later ones. The stages
themselves are tested in their own files (and run for real in the lesson); here their
commands are replaced by recorders that write what a finished stage leaves behind."""

import json

import pytest

from week09_alignment import pipeline

pytestmark = pytest.mark.stretch


@pytest.fixture
def recorded(monkeypatch):
    calls = []

    def stage(name):
        def main(argv):
            out = argv[argv.index("--out") + 1]
            init = argv[argv.index("--init") + 1]
            calls.append((name, init, out))
            from pathlib import Path
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "model.safetensors").write_text("x")
            (Path(out) / "stage.json").write_text(json.dumps({"stage": name}))
            return 0
        return main

    from week09_alignment import dpo_train, grpo_train, report, sft
    monkeypatch.setattr(sft, "main", stage("sft"))
    monkeypatch.setattr(dpo_train, "main", stage("dpo"))
    monkeypatch.setattr(grpo_train, "main", stage("rl"))

    def tax(stages, out, cfg):
        calls.append(("report", dict(stages), str(out)))
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("# card")
    monkeypatch.setattr(report, "alignment_tax", tax)
    return calls


def test_stages_chain_skip_and_redo(tmp_path, recorded):
    out = tmp_path / "w9"
    pipeline.run_pipeline("tiny", "auto", out, progress=False)
    assert [c[0] for c in recorded] == ["sft", "dpo", "rl", "report"]
    assert recorded[0][1] == "auto" and recorded[1][1] == str(out / "sft")
    assert recorded[2][1] == str(out / "dpo")
    assert recorded[3][1] == {"base": "auto", "sft": str(out / "sft"), "dpo": str(out / "dpo"),
                              "rl": str(out / "rl")}
    recorded.clear()
    pipeline.run_pipeline("tiny", "auto", out, progress=False)  # everything done: nothing runs
    assert recorded == []
    (out / "sft" / "keep.txt").write_text("survives")
    pipeline.run_pipeline("tiny", "auto", out, start="rl", progress=False)
    assert [c[0] for c in recorded] == ["rl", "report"]
    assert (out / "sft" / "keep.txt").exists()  # only the redone stages are removed


def test_an_unfinished_stage_runs_again(tmp_path, recorded):
    out = tmp_path / "w9"
    (out / "dpo" / "train").mkdir(parents=True)  # a killed DPO: checkpoints, no model yet
    (out / "sft").mkdir(parents=True)
    (out / "sft" / "model.safetensors").write_text("x")
    (out / "sft" / "stage.json").write_text("{}")
    pipeline.run_pipeline("tiny", "auto", out, progress=False)
    assert [c[0] for c in recorded] == ["dpo", "rl", "report"]
    assert (out / "dpo" / "train").is_dir()  # left for the stage to resume from


def test_bad_from_names_the_stages(tmp_path):
    with pytest.raises(ValueError, match="sft, dpo, rl, report"):
        pipeline.run_pipeline("tiny", "auto", tmp_path, start="grpo")
