"""The speedrun end to end at smoke size: every stage, re-runs, --from, a killed stage, bad input."""

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from week12_nanochat.presets import preset
from week12_nanochat.speedrun import READY, STAGES, main, run_speedrun

pytestmark = pytest.mark.core


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke speedrun (module-wide): (its out folder, the printed lines, the statuses)."""
    root = tmp_path_factory.mktemp("speedrun")
    out = root / "runs" / "speedrun-smoke"
    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_RUNS", str(root / "runs"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        with contextlib.redirect_stdout(buf):
            status = run_speedrun(preset("smoke"), out, progress=False)
    return out, buf.getvalue().splitlines(), status


def test_the_whole_pipeline_writes_every_stage_and_a_model_that_answers(smoke_run, monkeypatch):
    from week12_nanochat.engine import ChatEngine, Sampling, default_tools, find_model, load_chat

    out, lines, status = smoke_run
    assert status == {s: "ran" for s in STAGES}
    for stage in ("tokenizer", "base", "sft", "rl", "eval", "report"):
        assert (out / stage / "stage.json").is_file(), stage
    for stage in ("base", "sft", "rl"):
        assert (out / stage / "model.safetensors").is_file()
        assert list((out / stage / "train" / "checkpoints").iterdir())
    for name in ("report.md", "report.json", "stages.png", "tasks.png"):
        assert (out / "report" / name).stat().st_size > 0
    assert (out / "report" / "tasks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one summary line per stage, in order
    summaries = [ln for ln in lines if ln.startswith("[speedrun] ")]
    assert [ln.split()[1] for ln in summaries] == list(STAGES)
    # engine.find_model reads chat.json: the final (RL) model, which loads and answers
    monkeypatch.setenv("NANOCHAT_RUNS", str(out.parent))
    assert find_model() == out / "rl"
    model, tok, path = load_chat(find_model(out.parent))
    engine = ChatEngine(model, tok, tools=default_tools(repl=False))
    reply = engine.reply([{"role": "user", "content": "What is 2 + 3?"}],
                         Sampling(max_tokens=8))
    assert reply.finish_reason in ("stop", "length") and reply.completion_tokens > 0


def test_a_rerun_skips_every_stage_and_from_sft_redoes_only_the_later_ones(smoke_run, tmp_path):
    out = tmp_path / "speedrun-smoke"
    shutil.copytree(smoke_run[0], out)
    before = _files(out)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = run_speedrun(preset("smoke"), out, progress=False)
    assert status == {s: "skipped" for s in STAGES}
    assert _files(out) == before                       # nothing trained, nothing rewritten
    assert all("skipped" in ln for ln in buf.getvalue().splitlines() if ln.startswith("[speedrun]"))

    with contextlib.redirect_stdout(io.StringIO()):
        status = run_speedrun(preset("smoke"), out, start="sft", progress=False)
    assert status == {"tokenizer": "skipped", "base": "skipped", "sft": "ran", "rl": "ran",
                      "eval": "ran", "report": "ran", "chat": "ran"}
    after = _files(out)
    for name, data in before.items():
        if name.startswith(("tokenizer/", "base/")):
            assert after[name] == data, name           # base untouched, byte for byte
    assert after["sft/stage.json"] != before["sft/stage.json"]
    assert after[READY] != before[READY]


def test_a_killed_stage_resumes_exactly(smoke_run, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "NANOCHAT_KILL_AT_STEP": "2", "OMP_NUM_THREADS": "1",
           "NANOCHAT_RUNS": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "week12_nanochat.speedrun", "--preset", "smoke",
                        "--out", str(out), "--no-progress"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == -9, r.stderr[-2000:]        # SIGKILLed inside the base stage
    assert not (out / "base" / "stage.json").exists()
    assert list((out / "base" / "train" / "checkpoints").iterdir())
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = run_speedrun(preset("smoke"), out, progress=False, until="base")
    assert status == {"tokenizer": "skipped", "base": "ran"}
    assert "base resumed from step 2" in buf.getvalue()
    from shared import load_model

    resumed = load_model(out / "base" / "model.safetensors").state_dict()
    straight = load_model(smoke_run[0] / "base" / "model.safetensors").state_dict()
    assert resumed.keys() == straight.keys()
    for k in straight:
        assert torch.equal(resumed[k], straight[k]), k


@pytest.mark.parametrize("argv, named", [
    (["--preset", "huge"], "smoke, cpu, d20, 1b"),
    (["--preset", "smoke", "--from", "dpo"], "tokenizer, base, sft, rl, eval, report, chat"),
    (["--preset", "smoke", "--to", "serve"], "tokenizer, base, sft, rl, eval, report, chat"),
    (["--preset", "smoke", "--pretrain-data", "no-such-corpus"], "pydocs, fineweb-edu, climbmix"),
    (["--preset", "smoke", "--sft-data", "default,ultrachat"], "default, smoltalk, gsm8k"),
])
def test_bad_input_gives_one_line_naming_the_valid_values(argv, named, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err
    assert not (tmp_path / "x").exists()


def test_schedule_runs_every_stage_after_one_that_runs():
    """A finished stage is skipped only while nothing before it runs; --from forces its stage;
    RL off neither runs nor breaks the chain; --to ends the plan; bad names are errors."""
    from week12_nanochat.speedrun import schedule

    everything = set(STAGES)
    assert set(schedule(everything).values()) == {"skip"}
    assert schedule(set()) == {s: "run" for s in STAGES}
    holed = schedule(everything - {"sft"})  # sft lost: rl, eval, report, chat are stale
    assert [holed[s] for s in STAGES] == ["skip", "skip", "run", "run", "run", "run", "run"]
    assert schedule(everything, start="eval")["rl"] == "skip"
    assert schedule(everything, start="eval")["eval"] == "run"
    off = schedule(everything - {"rl"}, rl=False)
    assert off["rl"] == "off" and off["eval"] == "skip"
    assert list(schedule(set(), until="base")) == ["tokenizer", "base"]
    with pytest.raises(ValueError, match="unknown stage 'sfft' for --from"):
        schedule(everything, start="sfft")


def test_a_stage_lost_in_the_middle_reruns_with_every_later_stage(smoke_run, tmp_path):
    """Deleting the SFT model's stage.json (a lost stage) makes the next run redo SFT and every
    stage after it, from nothing, and leave tokenizer and base untouched."""
    out = tmp_path / "copy"
    shutil.copytree(smoke_run[0], out)
    base = (out / "base" / "model.safetensors").read_bytes()
    (out / "sft" / "stage.json").unlink()
    status = run_speedrun(preset("smoke"), out, progress=False)
    assert status == {"tokenizer": "skipped", "base": "skipped", "sft": "ran", "rl": "ran",
                      "eval": "ran", "report": "ran", "chat": "ran"}
    assert (out / "base" / "model.safetensors").read_bytes() == base
