"""The learner's side: curriculum data, study paths, progress and the reflection's carry-over.

Each test writes a small repository of its own (a curriculum.toml with two weeks and a
track, a built week folder with an exercise report and a reflection log), so the figures
below are derived by hand from that data:

- week 00: core A (1 d, exercise ``a``), core B (1 d), stretch C (1 d), stretch D (2 d),
  mega E (2 d): 7 days;
- week 01 (planned): core F (4 d), stretch G (1 d), mega H (2 d): 7 days;
- track t: core T (2 d).
So the fast path is A B F = 6 days, the balanced one A B C F G = 8 days (D is over a day),
and the deep one everything = 16 days.
"""

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import nbformat
import pytest

from shared.curriculum import CurriculumError, load, tagged_notebook, tier_table, week_table
from shared.plan import PlanError, learner_dir, load_saved, parse_start, parse_weeks, save, schedule
from shared.progress import checklist, progress, standing
from shared.reflection import Carry, PivotState, SuiteResult, decide, paper_queue, render_entry

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

CURRICULUM = '''
[[week]]
key = "00"
folder = "week00_demo"
topic = "demo week"
status = "built"
objectives = ["build a"]
questions = ["q1?", "q2?", "q3?"]
papers = ["Paper One", "Paper Two"]
[[week.part]]
name = "A"
tier = "core"
days = 1.0
section = "1"
exercises = ["a"]
[[week.part]]
name = "B"
tier = "core"
days = 1.0
section = "2"
[[week.part]]
name = "C"
tier = "stretch"
days = 1.0
[[week.part]]
name = "D"
tier = "stretch"
days = 2.0
[[week.part]]
name = "E"
tier = "mega"
days = 2.0

[[week]]
key = "01"
folder = "week01_next"
topic = "next week"
status = "planned"
[[week.part]]
name = "F"
tier = "core"
days = 4.0
[[week.part]]
name = "G"
tier = "stretch"
days = 1.0
[[week.part]]
name = "H"
tier = "mega"
days = 2.0

[[track]]
key = "t"
folder = "tracks/track_t"
topic = "a track"
status = "planned"
[[track.part]]
name = "T"
tier = "core"
days = 2.0
'''


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.delenv("NANOCHAT_LEARNER", raising=False)
    (tmp_path / "curriculum.toml").write_text(CURRICULUM)
    week = tmp_path / "week00_demo"
    (week / "src" / "week00_demo").mkdir(parents=True)
    (week / "src" / "week00_demo" / "code.py").write_text("x = 1\n")
    (week / "exercises").mkdir()
    (week / "exercises" / "a.py").write_text("def a():\n    raise NotImplementedError\n")
    (week / "README.md").write_text("# demo\n")
    (week / "REFLECTION.md").write_text("# Week 00 reflection log\n")
    return tmp_path


def _report(repo, status):
    path = learner_dir(repo) / "exercises" / "week00_demo.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"exercise": "a", "tier": "core", "status": status, "detail": ""}]))
    return path


# ---------------------------------------------------------------------------- curriculum


def test_load_and_lookup(repo):
    cur = load(repo)
    assert [u.key for u in cur.units] == ["00", "01", "t"]
    assert cur.unit("0").folder == cur.unit("week00").folder == "week00_demo"
    assert cur.unit("00").days("core") == 2 and cur.unit("00").days() == 7
    with pytest.raises(CurriculumError, match="no week or track '5'.*valid: 00, 01, t"):
        cur.unit("5")


@pytest.mark.parametrize("bad, message", [
    ('tier = "core"', "tier must be one of core, stretch, mega; got 'hard'"),
    ("days = 1.0", "days must be a positive multiple of 0.5; got 0.3"),
    ('status = "built"', "status must be one of built, planned; got 'done'"),
])
def test_malformed_curriculum_names_the_entry_and_what_is_valid(repo, bad, message):
    good = (repo / "curriculum.toml").read_text()
    wrong = {"tier": 'tier = "hard"', "days": "days = 0.3", "status": 'status = "done"'}[bad.split()[0]]
    (repo / "curriculum.toml").write_text(good.replace(bad, wrong, 1))
    with pytest.raises(CurriculumError, match=message):
        load(repo)
    with pytest.raises(CurriculumError, match="not found"):
        load(repo / "nowhere")


def test_tables_and_lesson_tags(repo):
    cur = load(repo)
    assert "| 0 | [`week00_demo`](week00_demo) | demo week | built | 2 / 3 / 2 |" in week_table(cur)
    assert "| A | Core | 1 | §1 | `a` |" in tier_table(cur.unit("00"))
    lesson = repo / "week00_demo" / "week00_demo.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## 1. First [Stretch]\ntext"),
                                         nbformat.v4.new_markdown_cell("## 2. Second")])
    nbformat.write(nb, lesson)
    text = tagged_notebook(lesson, cur.unit("00"))
    sources = [c.source for c in nbformat.reads(text, as_version=4).cells]
    assert sources == ["## 1. First [Core]\ntext", "## 2. Second [Core]"]  # retagged
    lesson.write_text(text)
    assert tagged_notebook(lesson, cur.unit("00")) == text  # idempotent
    nb.cells.append(nbformat.v4.new_markdown_cell("## 3. Unplanned"))
    nbformat.write(nb, lesson)
    with pytest.raises(CurriculumError, match="'## 3. Unplanned' has no part with section"):
        tagged_notebook(lesson, cur.unit("00"))
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("## 1. x")]), lesson)
    with pytest.raises(CurriculumError, match=r"no '## N.' heading for section\(s\) 2"):
        tagged_notebook(lesson, cur.unit("00"))


# ---------------------------------------------------------------------------- paths


@pytest.mark.parametrize("weeks, names, days", [
    (8, ["A", "B", "F"], 6),
    (12, ["A", "B", "C", "F", "G"], 8),  # D (2 days) waits for the deep path; no mega, no track
    (16, ["A", "B", "C", "D", "E", "F", "G", "H", "T"], 16),
])
def test_path_rules(repo, weeks, names, days):
    plan = schedule(load(repo), weeks, date(2026, 12, 1))
    assert [s.part.name for s in plan.slots] == names and plan.days == days


def test_path_dates_and_position(repo):
    plan = schedule(load(repo), 8, date(2026, 12, 1))  # A: day 0, B: day 1, F: days 2-5
    assert plan.span("00") == (date(2026, 12, 1), date(2026, 12, 2))
    assert plan.span("01") == (date(2026, 12, 3), date(2026, 12, 6)) and plan.finish == date(2026, 12, 6)
    assert plan.planned_by(date(2026, 11, 30)) == 0
    assert plan.planned_by(date(2026, 12, 2)) == 2  # A and B finished by the end of the 2nd
    assert plan.planned_by(date(2026, 12, 4)) == 4  # and two of F's four days
    assert plan.current(date(2026, 12, 2)).part.name == "B"
    assert plan.study_week(date(2026, 12, 8)) == 2
    assert plan.next_unit("00").key == "01" and plan.next_unit("01") is None


def test_bad_path_input_lists_what_is_valid(repo, capsys):
    with pytest.raises(PlanError, match=r"WEEKS must be one of 8, 12, 16; got '9'.*8 \(fast"):
        parse_weeks("9")
    with pytest.raises(PlanError, match="START must be a date written YYYY-MM-DD.*got '2026-02-30'"):
        parse_start("2026-02-30")
    from shared.plan import main
    assert main(["--weeks", "16x", "--root", str(repo)]) == 2
    assert "WEEKS must be one of" in capsys.readouterr().err
    assert main(["--show", "--root", str(repo)]) == 2  # nothing saved yet
    assert "make path WEEKS=8|12|16" in capsys.readouterr().err


def test_the_choice_is_saved_outside_git_and_recomputed(repo, monkeypatch):
    assert ".learner/" in (Path(__file__).resolve().parents[2] / ".gitignore").read_text().split()
    path = save(schedule(load(repo), 12, date(2026, 12, 1)), repo)
    assert path == repo / ".learner" / "plan.json"
    assert json.loads(path.read_text()) == {"weeks": 12, "start": "2026-12-01"}
    assert "| 1 | 2026-12-01 to 2026-12-07 | week 00, week 01 |" in (repo / ".learner" / "PLAN.md").read_text()
    plan = load_saved(repo)
    assert plan.weeks == 12 and plan.days == 8
    monkeypatch.setenv("NANOCHAT_LEARNER", str(repo / "elsewhere"))
    assert load_saved(repo) is None
    # the command line, as `make path` runs it
    out = subprocess.run([sys.executable, "-m", "shared.plan", "--weeks", "8", "--start", "2026-12-01",
                          "--root", str(repo)], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0 and "Study plan: 8 weeks, fast" in out.stdout
    assert (repo / "elsewhere" / "plan.json").exists()


# ---------------------------------------------------------------------------- progress


def test_progress_counts_the_learners_state_against_the_plan(repo):
    save(schedule(load(repo), 8, date(2026, 12, 1)), repo)
    runs = repo / "runs"
    (repo / "other").mkdir()
    (repo / "other" / "curriculum.toml").write_text(CURRICULUM)
    with pytest.raises(PlanError, match="no study path chosen"):
        progress(repo / "other", date(2026, 12, 2), runs)
    # nothing done by the end of the 2nd: the plan has finished A and B (2 days) -> 2 behind
    st = standing(repo, load_saved(repo), date(2026, 12, 2), runs)
    assert st.done_days == 0 and st.planned_days == 2 and st.verdict() == "2 days behind the plan"
    # the exercise passes (A done); a Sunday entry closes the parts without exercises (B)
    _report(repo, "passed")
    log = repo / "week00_demo" / "REFLECTION.md"
    log.write_text(log.read_text() + "\n## Sunday 2026-12-02 (week 00)\n")
    text, st = progress(repo, date(2026, 12, 2), runs)
    assert st.done_days == 2 and st.verdict() == "on plan"
    assert "| week 00 | core 1/1 | not run | none saved | 1, last 2026-12-02 | 2/2 |" in text
    assert "| week 01 (planned) | none |" in text
    log_md = (repo / ".learner" / "LOG.md").read_text()
    assert "## Week 0: demo week (2026-12-01 to 2026-12-02)" in log_md
    assert "- [x] A (core, 1 d; exercises: a ok)" in log_md and "- [ ] F (core, 4 d)" in log_md
    assert (runs / "progress.png").read_bytes()[:4] == b"\x89PNG"
    history = (repo / ".learner" / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["done_days"] for h in history] == [2]
    # an exercise file edited after the report: the report is stale
    exercise = repo / "week00_demo" / "exercises" / "a.py"
    later = os.path.getmtime(_report(repo, "failed")) + 10
    os.utime(exercise, (later, later))
    st = standing(repo, load_saved(repo), date(2026, 12, 6), runs)
    assert st.states["00"].exercises_stale and st.done_days == 1 and st.verdict() == "5 days behind the plan"


def test_notebook_run_is_judged_against_the_code(repo):
    save(schedule(load(repo), 8, date(2026, 12, 1)), repo)
    runs = repo / "runs"
    nb = runs / "notebooks" / "week00.ipynb"
    nb.parent.mkdir(parents=True)
    cell = nbformat.v4.new_code_cell("1", outputs=[nbformat.v4.new_output("stream", text="1")])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), nb)
    code = repo / "week00_demo" / "src" / "week00_demo" / "code.py"
    st = standing(repo, load_saved(repo), date(2026, 12, 3), runs).states["00"]
    assert st.notebook.startswith("ran ")
    later = os.path.getmtime(nb) + 10
    os.utime(code, (later, later))
    st = standing(repo, load_saved(repo), date(2026, 12, 3), runs).states["00"]
    assert st.notebook.startswith("older than the code")


def test_the_weekly_log_runs_to_week_13_plus(repo):
    save(schedule(load(repo), 16, date(2026, 12, 1)), repo)
    text = checklist(standing(repo, load_saved(repo), date(2026, 12, 1), repo / "runs"))
    assert text.index("## Week 0:") < text.index("## Week 1:") < text.index("## Week 13+: the tracks")
    assert "### Track t: a track" in text and "- [ ] Sunday reflection (`make reflect WEEK=00`)" in text


# ---------------------------------------------------------------------------- reflection


GREEN = SuiteResult(5, 0, 0, 1.0)
CORE_DONE = [dict(exercise="a", tier="core", status="passed", detail="ok"),
             dict(exercise="s", tier="stretch", status="failed", detail="test_s failed")]
CORE_OPEN = [dict(exercise="a", tier="core", status="not implemented", detail="not implemented yet")]


@pytest.mark.parametrize("state, choice", [
    (PivotState(SuiteResult(4, 1, 0, 1.0), CORE_DONE, 5.0), "repeat"),   # 1: a test fails
    (PivotState(SuiteResult(0, 0, 0, 0.0), CORE_DONE, 0.0), "repeat"),   # 1: no tests ran
    (PivotState(GREEN, CORE_OPEN, -5.0), "repeat"),                      # 2 before 3
    (PivotState(GREEN, CORE_DONE, -2.0), "compress"),                    # 3
    (PivotState(None, CORE_DONE, -1.5), "proceed"),                      # within the margin
    (PivotState(GREEN, CORE_DONE, 2.0), "extend"),                       # 4
    (PivotState(GREEN, CORE_DONE, 0.0, ({"name": "b", "target_met": False},)), "proceed"),  # 5
    (PivotState(GREEN, None, None), "proceed"),                          # no plan, no exercises
])
def test_decision_tree(state, choice):
    assert decide(state)[0] == choice


def test_decision_reasons_say_why():
    assert decide(PivotState(GREEN, CORE_OPEN, 0.0)) == ("repeat", "core exercises not passed yet: a")
    assert "3 days behind the plan: drop the Stretch parts" in decide(PivotState(GREEN, CORE_DONE, -3.0))[1]
    assert "benchmark targets missed: b" in decide(
        PivotState(GREEN, CORE_DONE, 0.0, ({"name": "b", "target_met": False},)))[1]


def test_paper_queue_carries_what_is_unread():
    log = ("# log\n## Sunday 2026-12-06 (week 00)\n### Paper queue\n- [x] Paper One\n"
           "- [ ] My own find\n- [ ] Paper Two\n\n### Motivation check\n- [ ] not a paper\n")
    assert paper_queue(log, ["Paper One", "Paper Two", "Paper Three"]) == \
        ["My own find", "Paper Two", "Paper Three"]
    assert paper_queue("# log\n", ["Paper One"]) == ["Paper One"]  # the first entry


def test_entry_carries_objectives_questions_papers_and_next_week(repo):
    from shared.reflection import reflect
    save(schedule(load(repo), 12, date(2026, 12, 1)), repo)
    _report(repo, "passed")
    text = reflect("00", root=repo, runs=repo / "runs", tests=False, exercises=False,
                   today=date(2026, 12, 6)).read_text()
    assert "### This week's objectives\n\n- [ ] build a" in text
    assert "1. q1?" in text and "3. q3?" in text
    assert "- [ ] Paper One\n- [ ] Paper Two" in text
    assert "On your 12-week path: week 01 (next week), 2026-12-04 to 2026-12-08:" in text
    assert "- [ ] F [core, 4 d]\n- [ ] G [stretch, 1 d]" in text
    # by the end of the 6th the plan has finished A, B, C and 3 of F's 4 days (6); only A
    # (its exercise passed) is done: 5 behind
    assert "- plan: 5 days behind the plan" in text
    assert "Suggested from the figures: **compress**" in text
    entry = render_entry("00", GREEN, None, [], date(2026, 12, 6), CORE_DONE, Carry(), None)
    assert "no path chosen" in entry and "### Self-check" not in entry


def test_dashboard_shows_the_progress_chart(repo):
    from shared.dashboard import build
    runs = repo / "runs"
    page = build(runs, repo).read_text()
    assert "No study path chosen yet" in page
    save(schedule(load(repo), 8, date.today()), repo)
    page = build(runs, repo).read_text()
    assert "<img src='progress.png'>" in page and (runs / "progress.png").exists()
    assert "| week 00 |" in page
