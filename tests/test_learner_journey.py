"""The issue's "done means", as a learner who has just cloned the repo would go.

On a copy of week00 (its exercises, tests and logs) and the real curriculum.toml in a
temporary folder, so the checkout is untouched: choose the 8-week path; fill in one
exercise (``clip_grad_norm``, by pasting the worked solution over the stub); reflect on
week 00, which runs the exercises through the same adapter as ``make week00-exercises``;
then ``make progress`` sees the learner's own state. Bad input gets errors listing what
is valid.
"""

import ast
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from shared.plan import main as plan_main
from shared.progress import progress
from shared.reflection import find_week, reflect

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

ROOT = Path(__file__).resolve().parents[1]
WEEK = "week00_micrograd"


def _function_source(path: Path, name: str) -> str:
    text = path.read_text()
    node = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == name)
    return "\n".join(text.splitlines()[node.lineno - 1 - len(node.decorator_list):node.end_lineno])


def solved_file_imports(week: Path) -> list[str]:
    """The solution file's import lines (the learner would add what their code needs)."""
    text = (week / "exercises" / "solutions" / "optim.py").read_text()
    return [line for line in text.splitlines() if line.startswith(("import ", "from "))]


def test_a_new_learner_plans_builds_one_exercise_and_sees_their_state(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NANOCHAT_LEARNER", raising=False)
    shutil.copy(ROOT / "curriculum.toml", tmp_path)
    week = tmp_path / WEEK
    for part in ("exercises", "tests"):
        shutil.copytree(ROOT / WEEK / part, week / part)
    for name in ("README.md", "REFLECTION.md"):
        shutil.copy(ROOT / WEEK / name, week / name)
    stub = week / "exercises" / "optim.py"
    solved = _function_source(week / "exercises" / "solutions" / "optim.py", "clip_grad_norm")
    imports = "".join(line + "\n" for line in solved_file_imports(week))
    stub.write_text(imports + stub.read_text().replace(_function_source(stub, "clip_grad_norm"), solved))

    start = date.today() - timedelta(days=2)
    assert plan_main(["--weeks", "8", "--start", start.isoformat(), "--root", str(tmp_path)]) == 0
    assert "Study plan: 8 weeks, fast" in capsys.readouterr().out

    log = reflect("00", root=tmp_path, runs=tmp_path / "runs", tests=False).read_text()
    assert "- exercises: 1 of 8 passed (core 1/7, stretch 0/1)" in log
    assert "not implemented: `backward` [core]: not implemented yet: Value.backward" in log
    assert "**repeat** (core exercises not passed yet: topo, backward, adamw_step" in log
    assert "### This week's objectives" in log and "### Self-check" in log
    assert "On your 8-week path: week 01" in log

    text, st = progress(tmp_path, runs=tmp_path / "runs")
    assert st.states["00"].exercise_status("clip_grad_norm") == "passed"
    assert st.states["00"].exercise_status("topo") == "not implemented"
    assert "| week 00 | core 1/7, stretch 0/1 |" in text
    assert "study week 1 of 8" in text
    assert "- [x] Gradient clipping by global norm" in (tmp_path / ".learner" / "LOG.md").read_text()


def test_bad_input_lists_what_is_valid(tmp_path, capsys):
    shutil.copy(ROOT / "curriculum.toml", tmp_path)
    assert plan_main(["--weeks", "9", "--root", str(tmp_path)]) == 2
    assert "WEEKS must be one of 8, 12, 16; got '9'" in capsys.readouterr().err
    assert plan_main(["--weeks", "8", "--start", "1 December", "--root", str(tmp_path)]) == 2
    assert "START must be a date written YYYY-MM-DD" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no week '42'.*valid WEEK values: 00, 01"):
        find_week("42", ROOT)
