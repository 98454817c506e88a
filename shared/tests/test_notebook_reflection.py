"""The notebook runner and the reflection log, on small folders the tests write."""

from datetime import date

import nbformat
import pytest

from shared import MetricsLogger, save_benchmark
from shared.notebook import main as notebook_main
from shared.notebook import run_notebook
from shared.reflection import SuiteResult, find_week, reflect, suggest


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path


def test_notebook_runs_in_smoke_mode_with_the_venv_kernel(tmp_path):
    path = _notebook(tmp_path / "nb.ipynb",
                     "import sys, shared\nfrom shared import is_smoke\nassert is_smoke()",
                     "open('cwd_marker.txt', 'w').write(sys.executable)")
    assert run_notebook(path, smoke=True) > 0
    assert (tmp_path / "cwd_marker.txt").exists()  # the kernel runs in the notebook's folder
    assert nbformat.read(path, as_version=4).cells[0].outputs == []  # not saved unless inplace


def test_notebook_figures_are_kept_even_with_agg_in_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the Makefile exports this for scripts
    path = _notebook(tmp_path / "plot.ipynb",
                     "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    run_notebook(path, smoke=False, inplace=True)
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_notebook_inplace_saves_outputs_and_failures_name_the_cell(tmp_path, capsys):
    path = _notebook(tmp_path / "nb.ipynb", "from shared import is_smoke\nprint('smoke', is_smoke())")
    assert notebook_main([str(path), "--inplace"]) == 0
    assert "smoke False" in nbformat.read(path, as_version=4).cells[0].outputs[0]["text"]
    bad = _notebook(tmp_path / "bad.ipynb", "x = 1", "raise ValueError('boom in cell two')")
    with pytest.raises(RuntimeError, match="bad.ipynb failed(.|\n)*boom in cell two"):
        run_notebook(bad)
    assert notebook_main([str(tmp_path / "missing.ipynb")]) == 1
    assert "no notebook" in capsys.readouterr().err


def _week(root):
    week = root / "week07_demo"
    (week / "tests").mkdir(parents=True)
    (week / "tests" / "test_ok.py").write_text("def test_a():\n    assert 1 + 1 == 2\n\n"
                                               "def test_b():\n    assert True\n")
    (week / "REFLECTION.md").write_text("# Week 07 reflection log\n")
    return week


def test_reflect_appends_a_prefilled_entry(tmp_path):
    _week(tmp_path)
    runs = tmp_path / "runs"
    with MetricsLogger(runs / "week07-train-1", tensorboard=False) as log:
        log.log(step=10, loss=1.25)
    save_benchmark("week07_forgetting", {"summary": {"bwt": -0.02}, "target_met": False}, root=runs)
    log_path = reflect("7", root=tmp_path, runs=runs, tests=True, today=date(2026, 11, 29))
    text = log_path.read_text()
    assert text.startswith("# Week 07 reflection log\n")
    assert "## Sunday 2026-11-29 (week 07)" in text
    assert "tests: 2 passed, 0 failed" in text
    assert "week07-train-1" in text and "loss=1.25" in text
    assert "week07_forgetting" in text and "bwt=-0.02" in text and "target missed" in text
    assert "Suggested from the figures: **extend**" in text
    for heading in ("Build log", "Pivot decision", "Next week's plan", "Paper queue", "Motivation check"):
        assert f"### {heading}" in text
    reflect("07", root=tmp_path, runs=runs, tests=False, today=date(2026, 12, 6))
    assert log_path.read_text().startswith(text)  # append-only
    assert log_path.read_text().count("## Sunday") == 2


def test_unknown_week_lists_valid_ones(tmp_path):
    _week(tmp_path)
    with pytest.raises(ValueError, match="no week '3'.*valid WEEK values: 07"):
        find_week("3", tmp_path)


@pytest.mark.parametrize("tests, benches, choice", [
    (SuiteResult(3, 1, 0, 1.0), [], "repeat"),
    (SuiteResult(0, 0, 0, 0.0), [], "repeat"),
    (SuiteResult(3, 0, 0, 1.0), [{"name": "b", "target_met": False}], "extend"),
    (SuiteResult(3, 0, 0, 1.0), [{"name": "b", "target_met": True}], "proceed"),
])
def test_suggestion_rules(tests, benches, choice):
    assert suggest(tests, benches)[0] == choice
