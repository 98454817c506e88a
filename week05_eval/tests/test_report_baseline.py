"""Report card and baseline pipeline: clear errors for bad inputs, and a seconds-long run."""

import json

import pytest
import torch

from shared import model_spec, read_metrics, save_checkpoint
from shared.checkpoint import CheckpointError
from week02_bpe import TokenizerFileError
from week05_eval import loading, report
from week05_eval.loading import find_baseline, load_for_eval

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _save_llama(path, tiny_llama, tokenizer_path=None):
    meta = {"kind": "week03-train", "step": 7, "model": model_spec(tiny_llama),
            "train": {"extra": {"tokenizer": str(tokenizer_path)} if tokenizer_path else {}}}
    return save_checkpoint(path, {"model": tiny_llama.state_dict(), "step": 7}, meta)


def test_load_for_eval_round_trip(tmp_path, tokenizer, tiny_llama):
    tok_path = tokenizer.save(tmp_path / "tok" / "tokenizer.json")
    ckpt = _save_llama(tmp_path / "run" / "checkpoints" / "step_0000007.safetensors",
                       tiny_llama, tok_path)
    model, tok, meta = load_for_eval(tmp_path / "run")        # a run folder works too
    assert meta["checkpoint"] == str(ckpt) and meta["step"] == 7
    assert tok.vocab_size == tokenizer.vocab_size
    x = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(x), tiny_llama(x))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tokenizer, tiny_llama):
    ckpt = _save_llama(tmp_path / "c.safetensors", tiny_llama)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])                   # truncated mid-tensor
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_for_eval(ckpt, tokenizer=tokenizer)
    ckpt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="c.safetensors"):
        load_for_eval(ckpt, tokenizer=tokenizer)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_for_eval(tmp_path / "missing.safetensors")


def test_wrong_shapes_and_missing_model_meta(tmp_path, tokenizer, tiny_llama):
    spec = model_spec(tiny_llama)
    meta = {"model": {**spec, "config": {**spec["config"], "n_embd": 64, "n_head": 4}}}
    p = save_checkpoint(tmp_path / "w.safetensors", {"model": tiny_llama.state_dict()}, meta)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_for_eval(p, tokenizer=tokenizer)
    p = save_checkpoint(tmp_path / "n.safetensors", {"model": tiny_llama.state_dict()}, {})
    with pytest.raises(CheckpointError, match="no model description"):
        load_for_eval(p, tokenizer=tokenizer)


def test_missing_tokenizer_is_a_clear_error(tmp_path, tiny_llama):
    ckpt = _save_llama(tmp_path / "deep" / "run" / "checkpoints" / "step_0000007.safetensors",
                       tiny_llama, tmp_path / "gone" / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match="no tokenizer found.*--tokenizer"):
        load_for_eval(ckpt)
    bad = tmp_path / "bad.json"
    bad.write_text("{broken")
    with pytest.raises(TokenizerFileError, match="corrupt"):
        load_for_eval(ckpt, tokenizer=bad)
    # the command line turns both into one line on stderr and exit code 2
    assert report.main([str(ckpt), "--quiet"]) == 2


def test_report_cli_errors(tmp_path, capsys):
    assert report.main([str(tmp_path / "nope.safetensors"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main(["--help"])
    assert "--tokenizer" in capsys.readouterr().out


def test_find_baseline_without_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="make baseline"):
        find_baseline(tmp_path)


@pytest.fixture
def text_folder(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(16):
        lines = [f"Module {i} documents the function number {i} carefully and at length.",
                 f"Calling it with {i} arguments returns a list of {i + 1} values in order.",
                 "Every object carries a reference count that the interpreter manages.",
                 f"It raises ValueError when the number {i} is negative, as the docs say."]
        (folder / f"doc{i:02d}.txt").write_text("\n".join(lines * 3))
    return folder


def test_baseline_smoke_end_to_end(tmp_path, text_folder, capsys):
    """The whole pipeline at the smoke preset: tokenizer, shards, model, training, report card,
    baseline.json, the metrics run for the dashboard, and find_baseline."""
    from week05_eval import baseline
    runs = tmp_path / "runs"
    out = runs / "week05-baseline-smoke"
    assert baseline.main(["--smoke", "--data", str(text_folder), "--out", str(out),
                          "--device", "cpu", "--quiet"]) == 0
    summary = json.loads((out / "baseline.json").read_text())
    assert summary["steps"] == 3 and 0 < summary["val_bpb"] < 20
    assert summary["unigram_bpb"] > 0
    assert {r["task"] for r in summary["mc"]} == {"pydocs_cloze", "pydocs_next_line"}
    md = (out / "report" / "report.md").read_text()
    for part in ("## Model", "## Language modelling", "bits per byte", "## Multiple choice",
                 "CORE", "## Timings", "loss_curve.png", "tasks.png"):
        assert part in md, part
    assert (out / "report" / "loss_curve.png").stat().st_size > 0
    reports = list(runs.glob("week05-report-*"))
    assert len(reports) == 1
    row = read_metrics(reports[0])[-1]
    assert row["val_bpb"] == pytest.approx(summary["val_bpb"])
    assert find_baseline(runs) == out / summary["checkpoint"]
    assert "val bits per byte" in capsys.readouterr().out
    # the report CLI on the baseline's checkpoint (tokenizer found from the meta)
    assert report.main([str(find_baseline(runs)), "--out", str(tmp_path / "r2"), "--limit", "3",
                        "--gen-limit", "1", "--max-tokens", "200", "--no-tools", "--quiet",
                        "--runs", str(runs)]) == 0
    assert (tmp_path / "r2" / "report.md").exists()
    assert loading.resolve_checkpoint(out / "train").name.startswith("step_")


def test_baseline_cli_errors(tmp_path, capsys):
    from week05_eval import baseline
    assert baseline.main(["--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert baseline.main(["--device", "tpu"]) == 2
    with pytest.raises(SystemExit):
        baseline.main(["--preset", "huge"])


def test_baseline_trains_the_model_class_its_preset_names(tmp_path, text_folder, monkeypatch):
    """The seam later weeks use (week08 trains MLA + MoE through this pipeline): the preset's
    ``model_class`` is built from its ``config_class`` and recorded in the checkpoint, so the
    report card rebuilds that class; its ``loss_fn`` and ``hooks`` (import paths) reach the
    Trainer. Here week01's GPT stands in for a later week's model, and a module written to
    tmp_path holds the loss and the hook, which count their calls."""
    from dataclasses import replace

    from shared.checkpoint import read_meta
    from week05_eval import baseline
    (tmp_path / "my_training.py").write_text(
        "from week03_training import next_token_loss\n"
        "calls = {'loss': 0, 'hook': 0}\n"
        "def loss(model, batch):\n    calls['loss'] += 1\n    return next_token_loss(model, batch)\n"
        "def hook(trainer, info):\n    calls['hook'] += 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    preset = replace(baseline.PRESETS["smoke"], model_class="week01_transformer:GPT",
                     model=dict(n_layer=1, n_head=2, n_embd=32, block_size=64),
                     loss_fn="my_training:loss", hooks=("my_training:hook",))
    out = tmp_path / "runs" / "week05-baseline-gpt"
    summary = baseline.run_baseline(preset, out, data=str(text_folder), progress=False)
    meta = read_meta(out / summary["checkpoint"])
    assert meta["model"]["class"] == "week01_transformer.model:GPT"
    assert 0 < summary["val_bpb"] < 20
    model, _, _ = load_for_eval(out / summary["checkpoint"])
    assert type(model).__name__ == "GPT"
    import sys
    calls = sys.modules["my_training"].calls  # the module the preset's import paths loaded
    assert calls["hook"] == 3  # after each of the 3 optimizer steps
    assert calls["loss"] >= 3  # every training micro-batch (and validation)
