"""The notebook runner and the reflection log, on small folders the tests write."""

import base64
import io
from datetime import date

import nbformat
import pytest

from shared import MetricsLogger, save_benchmark
from shared.notebook import (
    SAVED_RE,
    clean_stream,
    compact_notebook,
    run_notebook,
    shrink_png,
    stamp_saved_outputs,
    trim_text,
)
from shared.notebook import main as notebook_main
from shared.reflection import PivotState, SuiteResult, decide, find_week, reflect

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


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
    outputs = nbformat.read(path, as_version=4).cells[-1].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_notebook_inplace_saves_outputs_and_failures_name_the_cell(tmp_path, capsys):
    path = _notebook(tmp_path / "nb.ipynb", "from shared import is_smoke\nprint('smoke', is_smoke())")
    assert notebook_main([str(path), "--inplace"]) == 0
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown"  # the stamp, added because there was none
    assert SAVED_RE.search(nb.cells[0].source).group(1) == "full"
    assert "smoke False" in nb.cells[1].outputs[0]["text"]
    assert notebook_main([str(path), "--inplace", "--smoke"]) == 0
    nb = nbformat.read(path, as_version=4)
    assert len(nb.cells) == 2 and SAVED_RE.search(nb.cells[0].source).group(1) == "smoke"
    assert "smoke True" in nb.cells[1].outputs[0]["text"]
    bad = _notebook(tmp_path / "bad.ipynb", "x = 1", "raise ValueError('boom in cell two')")
    with pytest.raises(RuntimeError, match="bad.ipynb failed(.|\n)*boom in cell two"):
        run_notebook(bad)
    assert notebook_main([str(tmp_path / "missing.ipynb")]) == 1
    assert "no notebook" in capsys.readouterr().err



def test_out_saves_a_copy_and_leaves_the_lesson_alone(tmp_path, capsys):
    """``--out PATH`` (``make weekNN-notebook OUT=PATH``): the learner's own run, saved
    elsewhere; the tracked notebook keeps its bytes."""
    path = _notebook(tmp_path / "lesson.ipynb", "from shared import is_smoke\nprint('smoke', is_smoke())")
    before = path.read_bytes()
    out = tmp_path / "mine" / "lesson-run.ipynb"
    assert notebook_main([str(path), "--out", str(out)]) == 0
    assert path.read_bytes() == before
    nb = nbformat.read(out, as_version=4)
    assert SAVED_RE.search(nb.cells[0].source).group(1) == "full"
    assert "smoke False" in nb.cells[1].outputs[0]["text"]
    assert notebook_main([str(path), "--out", str(out), "--smoke"]) == 0
    assert "smoke True" in nbformat.read(out, as_version=4).cells[1].outputs[0]["text"]
    assert notebook_main([str(path), "--out", str(tmp_path / "x.txt")]) == 1
    assert "must be a .ipynb path" in capsys.readouterr().err
    with pytest.raises(ValueError, match="inplace or out, not both"):
        run_notebook(path, inplace=True, out=out)
    assert path.read_bytes() == before


def test_inplace_outputs_are_compact_and_free_of_machine_paths(tmp_path):
    path = _notebook(tmp_path / "nb.ipynb",
                     "import sys, tempfile\nfrom tqdm import tqdm\n"
                     "for _ in tqdm(range(50), file=sys.stderr, mininterval=0): pass\n"
                     "print(tempfile.mkdtemp(prefix='scratch-'))",
                     "import matplotlib.pyplot as plt\nplt.figure(figsize=(6, 4))\n"
                     "plt.plot(range(100), [i * i for i in range(100)])\nplt.show()",
                     "for i in range(1000): print('line', i)")
    run_notebook(path, smoke=True, inplace=True)
    cells = nbformat.read(path, as_version=4).cells
    first, plot, long = cells[1:]
    assert [o["name"] for o in first.outputs] == ["stdout"]  # the bar's stderr is gone
    assert first.outputs[0]["text"] == "$TMPDIR/scratch-XXXXXXXX\n"  # no machine path, no churn
    png = base64.b64decode(plot.outputs[0]["data"]["image/png"])
    from PIL import Image
    im = Image.open(io.BytesIO(png))
    assert im.mode == "P" and im.width <= 6 * 80 + 20  # palette PNG at the runner's dpi
    text = long.outputs[0]["text"]
    assert "line 0\n" in text and "line 999" in text and "lines trimmed" in text
    assert len(text.splitlines()) < 150
    assert "execution" not in plot.metadata  # no timestamps to churn


def test_shrink_png_is_smaller_deterministic_and_scales_wide_images():
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (1600, 400), "white")
    draw = ImageDraw.Draw(im)
    for i in range(0, 1600, 7):
        draw.line([(i, 0), (1600 - i, 400)], fill=(i % 256, 80, 255 - i % 256), width=2)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    small = shrink_png(buf.getvalue(), max_width=800)
    assert small == shrink_png(buf.getvalue(), max_width=800)
    assert Image.open(io.BytesIO(small)).size == (800, 200)
    tiny = io.BytesIO()
    Image.new("P", (4, 4)).save(tiny, "PNG", optimize=True)
    assert shrink_png(tiny.getvalue()) == tiny.getvalue()  # nothing to gain: kept as it was


def test_progress_bars_and_long_text_are_trimmed():
    bar = "train:  10%|#         | 1/10 [00:00<00:01, 9.1it/s]\rtrain: 100%|##########| 10/10 [00:01<00:00, 9.9it/s]\n"
    assert clean_stream(bar, stderr=True).strip() == ""
    assert clean_stream("warning: x\n" + bar, stderr=True).strip() == "warning: x"
    assert clean_stream("step 1\rstep 2\rstep 3\ndone\n") == "step 3\ndone\n"
    noise = ("/x/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update jupyter\n"
             "  from .autonotebook import tqdm as notebook_tqdm\n")
    assert clean_stream(noise + "real warning\n", stderr=True) == "real warning\n"
    assert trim_text("short\ntext") == "short\ntext"
    assert len(trim_text("x" * 50_000, max_chars=1000)) < 1100


def test_stamp_replaces_itself_and_follows_the_title():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Week 3: loops\n\nBody.")])
    stamp_saved_outputs(nb, smoke=False, seconds=130, name="week03_training", machine="a 2-core CPU")
    stamp_saved_outputs(nb, smoke=True, seconds=42, name="week03_training", machine="a 2-core CPU")
    src = nb.cells[0].source
    assert src.startswith("# Week 3: loops\n\n> Saved outputs: smoke size, ran in 42 s on a 2-core CPU.")
    assert src.count("Saved outputs") == 1 and src.endswith("\n\nBody.")
    assert "make week03-notebook" in src
    compact_notebook(nb)  # markdown only: nothing to do, nothing breaks


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
    assert "Suggested from the figures: **proceed**" in text  # a missed target is named, not a pivot
    assert "benchmark targets missed: week07_forgetting" in text
    for heading in ("Build log", "Pivot decision", "Next week's plan", "Paper queue", "Motivation check"):
        assert f"### {heading}" in text
    reflect("07", root=tmp_path, runs=runs, tests=False, today=date(2026, 12, 6))
    assert log_path.read_text().startswith(text)  # append-only
    assert log_path.read_text().count("## Sunday") == 2


def test_unknown_week_lists_valid_ones(tmp_path):
    _week(tmp_path)
    with pytest.raises(ValueError, match="no week '3'.*valid WEEK values: 07"):
        find_week("3", tmp_path)


def test_a_track_reflects_by_its_key(tmp_path):
    """``make reflect WEEK=htm``: the track's folder, its own runs (track_htm*), its title."""
    _week(tmp_path)
    track = tmp_path / "tracks" / "track_htm"
    (track / "tests").mkdir(parents=True)
    (track / "tests" / "test_ok.py").write_text("def test_a():\n    assert 2 * 2 == 4\n")
    runs = tmp_path / "runs"
    with MetricsLogger(runs / "track_htm-stream-1", tensorboard=False) as log:
        log.log(step=3, anomaly=0.5)
    with MetricsLogger(runs / "week07-train-1", tensorboard=False) as log:
        log.log(step=10, loss=1.25)
    assert find_week("htm", tmp_path) == find_week("track_htm", tmp_path) == track
    log_path = reflect("htm", root=tmp_path, runs=runs, tests=True, today=date(2026, 12, 6))
    text = log_path.read_text()
    assert log_path == track / "REFLECTION.md" and text.startswith("# Track htm reflection log\n")
    assert "## Sunday 2026-12-06 (track htm)" in text and "tests: 1 passed, 0 failed" in text
    assert "track_htm-stream-1" in text and "week07-train-1" not in text
    with pytest.raises(ValueError, match="no week 'hmm'.*valid WEEK values: 07; tracks: htm"):
        find_week("hmm", tmp_path)


@pytest.mark.parametrize("tests, benches, choice", [
    (SuiteResult(3, 1, 0, 1.0), [], "repeat"),
    (SuiteResult(0, 0, 0, 0.0), [], "repeat"),
    (SuiteResult(3, 0, 0, 1.0), [{"name": "b", "target_met": False}], "proceed"),
    (SuiteResult(3, 0, 0, 1.0), [{"name": "b", "target_met": True}], "proceed"),
])
def test_suggestion_rules(tests, benches, choice):
    assert decide(PivotState(tests, None, None, tuple(benches)))[0] == choice


def test_reflect_reports_the_learners_exercises_and_repeats_on_a_core_gap(tmp_path):
    """A week with one exercise (a stub standing in for ``textwrap.dedent``, which its test
    calls): the entry counts it by tier and names what is not done, and the suggestion is to
    repeat the week while a core exercise is open."""
    week = _week(tmp_path)
    (week / "tests" / "test_dedent.py").write_text(
        "import textwrap\n\ndef test_dedent():\n    assert textwrap.dedent('  a') == 'a'\n")
    ex = week / "exercises"
    (ex / "solutions").mkdir(parents=True)
    (ex / "text.py").write_text("def dedent(text):\n    raise NotImplementedError("
                                "'not implemented yet: dedent (strip the common indent)')\n")
    (ex / "solutions" / "text.py").write_text("def dedent(text):\n    return text.strip()\n")
    (ex / "exercises.toml").write_text(
        '[[exercise]]\nname = "dedent"\ntier = "core"\nfile = "text.py"\nfunction = "dedent"\n'
        'replaces = ["textwrap:dedent"]\ntests = ["tests/test_dedent.py"]\nproves = "it dedents"\n')
    text = reflect("7", root=tmp_path, runs=tmp_path / "runs", tests=False,
                   today=date(2026, 12, 6)).read_text()
    assert "- exercises: 0 of 1 passed (core 0/1)" in text
    assert "not implemented: `dedent` [core]: not implemented yet: dedent" in text
    assert "**repeat** (core exercises not passed yet: dedent)" in text


def test_decide_follows_the_decision_tree():
    """The full tree (compress, extend) is in test_learner.py; these are the exercise rules."""
    green = SuiteResult(5, 0, 0, 1.0)
    core_open = [dict(exercise="backward", tier="core", status="not implemented"),
                 dict(exercise="cosine_lr", tier="stretch", status="passed")]
    core_done = [dict(exercise="backward", tier="core", status="passed"),
                 dict(exercise="cosine_lr", tier="stretch", status="failed")]
    assert decide(PivotState(SuiteResult(4, 1, 0, 1.0), core_done))[0] == "repeat"  # tests first
    assert decide(PivotState(green, core_open)) == ("repeat",
                                                    "core exercises not passed yet: backward")
    assert decide(PivotState(green, core_done))[0] == "proceed"  # an open stretch does not hold you
