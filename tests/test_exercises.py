"""Every week's exercises, through the same adapter the learner uses (``shared.exercises``).

For each week with an ``exercises/exercises.toml``: the committed stubs make every one of
their tests fail as "not implemented" (so each test really runs the learner's function, and
the manifest points only at tests that do), and the worked solutions make all of them pass.
A learner who has edited a week's stubs skips that week's stub check (it runs on a clean
checkout, as in CI). All the weeks run in one pytest process per implementation (the
plugin takes ``--exercises`` several times), so pytest and torch start twice, not twice per
week. Also: the manifest's bad input is an error saying what is valid.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.exercises import load_manifest

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

ROOT = Path(__file__).resolve().parents[1]
# the weeks' and the tracks' folders (relative to the root) that have exercises
WEEKS = sorted(p.parent.parent.relative_to(ROOT).as_posix()
               for p in [*ROOT.glob("week*/exercises/exercises.toml"), *ROOT.glob("tracks/*/exercises/exercises.toml")])


def run(weeks: list[str], impl: str, report: Path) -> dict[str, list[dict]]:
    """Every week's exercises with ``impl`` in ONE pytest run (one start-up of pytest and
    torch for all the weeks); each week's rows."""
    cmd = [sys.executable, "-m", "pytest", "-p", "shared.exercises",
           *(arg for w in weeks for arg in ("--exercises", w)), "--exercise-impl", impl,
           "--exercise-report", str(report), "-q", "--tb=no", "-p", "no:cacheprovider",
           *(f"{w}/tests" for w in weeks)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert report.exists(), f"no report: {out.stdout[-2000:]}{out.stderr[-2000:]}"
    rows: dict[str, list[dict]] = {}
    for r in json.loads(report.read_text()):
        rows.setdefault(r["week"], []).append(r)
    return rows


@pytest.fixture(scope="module")
def solutions(tmp_path_factory):
    return run(WEEKS, "solutions", tmp_path_factory.mktemp("ex") / "solutions.json")


def edited(week: str) -> str | None:
    """Why ``week``'s committed stubs cannot be checked here, or None."""
    out = subprocess.run(["git", "status", "--porcelain", "--", f"{week}/exercises"],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        return "not a git checkout: the stubs check needs the committed stubs"
    if out.stdout.strip():
        return f"you have edited {week}/exercises; this check runs on a clean checkout"
    return None


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    clean = [w for w in WEEKS if edited(w) is None]
    return run(clean, "mine", tmp_path_factory.mktemp("ex") / "mine.json") if clean else {}


def test_there_are_exercises():
    assert "week00_micrograd" in WEEKS


@pytest.mark.parametrize("week", WEEKS)
def test_the_solutions_pass(week, solutions):
    rows = solutions.get(Path(week).name, [])
    assert [r["exercise"] for r in rows] == [e.name for e in load_manifest(ROOT / week)]
    for r in rows:
        assert r["status"] == "passed" and r["tests"] > 0, r


@pytest.mark.parametrize("week", WEEKS)
def test_every_stub_fails_every_one_of_its_tests(week, stubs):
    if edited(week):
        pytest.skip(edited(week))
    rows = stubs.get(Path(week).name, [])
    assert [r["exercise"] for r in rows] == [e.name for e in load_manifest(ROOT / week)]
    for r in rows:
        assert r["status"] == "not implemented", r
        assert r["detail"].startswith("not implemented yet: "), r
        assert set(r["outcomes"].values()) == {"not implemented"}, r  # no test passes a stub


def test_a_bad_manifest_says_what_is_valid(tmp_path):
    week = tmp_path / "week99_x"
    (week / "exercises").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no exercises yet"):
        load_manifest(tmp_path / "week98_y")
    (week / "exercises" / "exercises.toml").write_text(
        '[[exercise]]\nname = "a"\ntier = "hard"\nfile = "a.py"\nfunction = "f"\n'
        'replaces = []\ntests = []\nproves = ""\n')
    with pytest.raises(ValueError, match=r"tier must be one of \('core', 'stretch', 'mega'\)"):
        load_manifest(week)
    (week / "exercises" / "exercises.toml").write_text('[[exercise]]\nname = "a"\n')
    with pytest.raises(ValueError, match="lacks"):
        load_manifest(week)


def test_the_readme_table_is_generated_from_the_manifests():
    from shared.exercises import README_BEGIN, README_END, table

    text = (ROOT / "README.md").read_text()
    block = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    assert block == table(ROOT), "run: python -m shared.exercises --write-readme README.md"


def test_a_child_process_gets_the_swaps_the_test_runs_with(tmp_path):
    """What week11's torchrun workers do: the plugin names the swaps in the environment and
    the child applies them first thing (nothing happens when the variable is unset)."""
    import os

    from shared.exercises import SWAP_ENV

    (tmp_path / "mine.py").write_text("def dedent(text):\n    return 'swapped ' + text\n")
    code = ("from shared.exercises import apply_env_swaps; n = apply_env_swaps(); "
            "import textwrap; print(n, textwrap.dedent('x'))")
    swaps = [{"file": str(tmp_path / "mine.py"), "function": "dedent",
              "replaces": ["textwrap:dedent"]}]
    env = {k: v for k, v in os.environ.items() if k != SWAP_ENV}
    out = subprocess.run([sys.executable, "-c", code], env={**env, SWAP_ENV: json.dumps(swaps)},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "swapped", "x"]
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["0", "x"]
