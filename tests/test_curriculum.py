"""curriculum.toml agrees with the repository it describes.

Every week folder is in it (and every built week in it is a folder); each week's parts add
up to 7 days; each part's exercises are exactly the week's manifest, tier for tier; each
lesson's numbered headings carry the tier of their parts; the three study paths fit in
their weeks; and the README tables generated from it are in step (python -m
shared.curriculum --write).
"""

from pathlib import Path

import pytest

from shared.curriculum import TIER_TAG, WEEK_DAYS, load, section_tiers, stale, tagged_notebook
from shared.exercises import load_manifest
from shared.plan import PATHS, schedule

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

ROOT = Path(__file__).resolve().parents[1]
CUR = load(ROOT)
BUILT = [u for u in CUR.units if u.status == "built"]


def test_every_folder_is_in_the_curriculum_and_every_built_unit_is_a_folder():
    folders = {p.name for p in ROOT.glob("week[0-9][0-9]_*") if (p / "pyproject.toml").exists()}
    folders |= {f"tracks/{p.name}" for p in ROOT.glob("tracks/*") if (p / "pyproject.toml").exists()}
    listed = {u.folder.removeprefix("tracks/") if u.kind == "week" else u.folder for u in CUR.units}
    assert folders <= listed, f"folders missing from curriculum.toml: {sorted(folders - listed)}"
    built = {u.folder for u in BUILT}
    assert built == folders, f"built in curriculum.toml but not folders (or the reverse): {built ^ folders}"
    assert [u.key for u in CUR.weeks] == [f"{i:02d}" for i in range(13)]


@pytest.mark.parametrize("unit", CUR.weeks, ids=lambda u: u.key)
def test_a_week_is_seven_days_with_a_core(unit):
    assert unit.days() == WEEK_DAYS, f"{unit.label}: parts add up to {unit.days()} days"
    assert 3 <= unit.days("core") <= 5, f"{unit.label}: Core is {unit.days('core')} days"
    assert unit.objectives and unit.papers
    assert 3 <= len(unit.questions) <= 5, f"{unit.label}: 3-5 self-check questions"


@pytest.mark.parametrize("unit", CUR.tracks, ids=lambda u: u.key)
def test_a_track_has_questions_and_papers(unit):
    assert unit.objectives and unit.papers and 3 <= len(unit.questions) <= 5


@pytest.mark.parametrize("unit", BUILT, ids=lambda u: u.key)
def test_parts_list_exactly_the_weeks_exercises_at_their_tier(unit):
    manifest_dir = ROOT / unit.folder / "exercises" / "exercises.toml"
    manifest = {e.name: e.tier for e in load_manifest(ROOT / unit.folder)} if manifest_dir.exists() else {}
    listed = {e: p.tier for p in unit.parts for e in p.exercises}
    assert sum(len(p.exercises) for p in unit.parts) == len(listed), "an exercise is listed twice"
    assert listed == manifest, (f"{unit.label}: curriculum.toml lists {sorted(listed.items())}, "
                                f"the manifest has {sorted(manifest.items())}")


@pytest.mark.parametrize("unit", [u for u in BUILT if any(p.section for p in u.parts)],
                         ids=lambda u: u.key)
def test_lesson_headings_carry_their_parts_tier(unit):
    lesson = ROOT / unit.folder / f"{Path(unit.folder).name}.ipynb"
    text = lesson.read_text(encoding="utf-8")
    assert tagged_notebook(lesson, unit) == text, f"run python -m shared.curriculum --write ({lesson.name})"
    for section, tier in section_tiers(unit).items():
        assert f"## {section}. " in text and TIER_TAG[tier] in text


@pytest.mark.parametrize("weeks", sorted(PATHS))
def test_each_path_fits_its_weeks(weeks):
    from datetime import date
    plan = schedule(CUR, weeks, date(2026, 12, 1))
    assert plan.days <= weeks * 7, f"the {weeks}-week path needs {plan.days} days"
    assert plan.study_week(plan.finish) <= weeks


def test_generated_tables_are_in_step():
    assert stale(ROOT) == [], "run: python -m shared.curriculum --write"
