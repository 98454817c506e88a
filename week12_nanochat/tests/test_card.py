"""The report card: its figures are the figures of the models it names."""

import contextlib
import io
import json

import pytest

from week12_nanochat.card import chat_core, display_path
from week12_nanochat.presets import preset
from week12_nanochat.speedrun import run_speedrun


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    """A smoke speedrun (module-wide): (out folder, report.json)."""
    out = tmp_path_factory.mktemp("card") / "speedrun-smoke"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NANOCHAT_RUNS", str(out.parent))
        mp.setenv("HF_HUB_OFFLINE", "1")
        with contextlib.redirect_stdout(io.StringIO()):
            run_speedrun(preset("smoke"), out, progress=False)
    return out, json.loads((out / "report" / "report.json").read_text())


def _load(folder):
    from week09_alignment.common import load_start

    model, tok, _ = load_start(folder, progress=False)
    return model.eval(), tok


@pytest.mark.core
def test_the_bpb_of_each_column_is_week05s_metric_on_that_model(card):
    from shared import load_corpus
    from week05_eval.metrics import encode_docs, evaluate_ids, token_bytes_of

    out, report = card
    n = report["config"]["max_tokens"]
    for stage in ("base", "rl"):
        model, tok = _load(out / stage)
        ids = encode_docs(tok, [d.text for d in load_corpus("pydocs").val_docs])[:n + 1]
        bpb = evaluate_ids(model, ids, token_bytes_of(tok), batch_size=16).bpb
        assert report["columns"][stage]["pydocs_bpb"] == pytest.approx(bpb, rel=1e-5)
    assert report["columns"]["base"]["pydocs_bpb"] != report["columns"]["sft"]["pydocs_bpb"]


@pytest.mark.core
def test_a_tool_figure_is_week05s_generative_eval_of_the_final_model(card):
    from week05_eval import evaluate_generative, tool_task
    from week05_eval.report import default_tools

    out, report = card
    cfg = report["config"]
    model, tok = _load(out / "rl")
    tools = default_tools(cfg["seed"])
    try:
        task = tool_task("arithmetic", n=cfg["gen_limit"], seed=cfg["seed"], split="test")
        acc = evaluate_generative(model, tok, task, style="chat", tools=tools,
                                  max_new_tokens=cfg["max_new_tokens"]).accuracy
    finally:
        for t in tools.values():
            getattr(t, "close", lambda: None)()
    assert report["columns"]["rl"]["tool_arithmetic_tools"] == acc


@pytest.mark.core
def test_sizes_stages_and_environment_are_those_of_the_run(card):
    out, report = card
    model, _ = _load(out / "sft")
    assert report["sizes"]["sft"]["params"] == sum(p.numel() for p in model.parameters())
    stage = json.loads((out / "base" / "stage.json").read_text())["speedrun"]
    assert report["stages"]["base"]["wall_s"] == stage["wall_s"]
    assert report["stages"]["base"]["cpu_s"] == stage["cpu_s"] > 0
    assert report["stages"]["base"]["metrics"]["params"] == report["sizes"]["base"]["params"]
    import torch

    assert report["environment"]["torch"] == torch.__version__
    md = (out / "report" / "report.md").read_text()
    for where in report["sources"].values():
        assert where in md                              # the card names its models
    assert "ChatCORE" in md and "stages.png" in md and "tasks.png" in md


@pytest.mark.core
def test_chat_core_is_the_mean_centred_accuracy_over_the_five_chat_tasks(card):
    from week05_eval import tool_task  # noqa: F401  (the tasks exist offline)
    from week05_eval.multiple_choice import centered_accuracy

    _, report = card
    for col in report["columns"].values():
        mc = [centered_accuracy(col[f"{t}_acc_norm"], c) for t, c in
              (("pydocs_cloze", 0.25), ("pydocs_next_line", 0.25))]
        tools = [centered_accuracy(col[f"tool_{k}_tools"], 0.0)
                 for k in ("arithmetic", "string", "facts")]
        assert col["chat_core"] == pytest.approx(sum(mc + tools) / 5)
        assert col["chat_core"] == pytest.approx(chat_core(col))


@pytest.mark.core
def test_the_printed_path_opens_from_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    target = tmp_path / "a" / "report.md"
    target.write_text("x")
    monkeypatch.chdir(tmp_path)
    assert display_path(target) == "a/report.md"
    monkeypatch.chdir(tmp_path / "a")
    assert display_path(tmp_path / "a" / "report.md") == "report.md"
    other = tmp_path.parent
    monkeypatch.chdir(tmp_path / "a")
    assert display_path(other) == str(other.resolve())
