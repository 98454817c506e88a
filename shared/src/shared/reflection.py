"""The Sunday reflection log behind ``make reflect WEEK=NN``: an entry about the learner.

Appends a dated entry to ``weekNN_*/REFLECTION.md`` (a track's ``tracks/track_KEY/REFLECTION.md``
for ``make reflect WEEK=KEY``, e.g. ``WEEK=htm``), pre-filled with the learner's state:

- measured: the week's test result (pytest is run, or ``--no-tests`` skips it); the
  learner's own exercises (``shared.exercises``: passed by tier, what is not done yet;
  ``--no-exercises`` skips them; the report is kept where ``make progress`` reads it);
  ahead of or behind the saved plan (``shared.plan``); the latest run's final metrics (runs
  whose folder name starts with ``weekNN``) and the saved benchmark figures;
- carried over from ``curriculum.toml``: the week's objectives, 3-5 self-check questions,
  and the paper queue (papers left unticked in the last entry, then the week's papers;
  ``- [x]`` marks one read);
- next week's plan: the next week's parts on the chosen path, with dates;
- the pivot decision with a suggestion from ``decide``, a written-out, unit-tested decision
  tree (repeat / compress / extend / proceed);

then the sections the learner writes (build log, decision, motivation check).

Left out: anything that edits earlier entries. The log is append-only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from shared.metrics import list_runs, load_benchmarks, read_metrics, runs_root

CHOICES = ("proceed", "repeat", "compress", "extend")
SUNDAY = "## Sunday"


@dataclass
class SuiteResult:
    passed: int
    failed: int
    skipped: int
    seconds: float

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped


def find_week(week: str, root: Path) -> Path:
    """The folder ``weekNN_*`` under ``root``, or ``tracks/track_KEY`` for a track's key
    (``htm``, ``track_htm``); a clear error lists the valid weeks and tracks."""
    nn = str(week).removeprefix("week").zfill(2)
    weeks = sorted(p for p in root.glob("week[0-9][0-9]_*") if p.is_dir())
    match = [p for p in weeks if p.name.startswith(f"week{nn}_")]
    if not nn.isdigit():
        key = str(week).removeprefix("track_").removeprefix("track-")
        match = [p for p in (root / "tracks").glob(f"track_{key}") if p.is_dir()]
    if not match:
        valid = ", ".join(p.name[4:6] for p in weeks) or "none"
        tracks = sorted(p.name.removeprefix("track_") for p in root.glob("tracks/track_*") if p.is_dir())
        also = f"; tracks: {', '.join(tracks)}" if tracks else ""
        raise ValueError(f"no week {week!r} under {root}; valid WEEK values: {valid}{also}")
    return match[0]


def unit_name(folder: Path) -> tuple[str, str]:
    """(label, run-name prefix) of a week or track folder: ("07", "week07") for
    week07_continual, ("htm", "track_htm") for tracks/track_htm."""
    if folder.name.startswith("track_"):
        return folder.name.removeprefix("track_"), folder.name
    return folder.name[4:6], folder.name[:6]


def run_tests(folder: Path) -> SuiteResult:
    """Run the week's pytest suite and count the outcomes from its JUnit XML."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", str(folder / "tests"), "-q",
                        f"--junitxml={xml}"], capture_output=True, text=True)
        if not xml.exists():
            return SuiteResult(0, 1, 0, 0.0)
        return parse_junit(xml)


def parse_junit(path: Path) -> SuiteResult:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    seconds = sum(float(s.get("time", 0)) for s in suites)
    return SuiteResult(tests - failed - skipped, failed, skipped, seconds)


def run_exercises(folder: Path, save: Path | None = None) -> list[dict] | None:
    """The learner's exercise results for the week (``shared.exercises`` rows), or None
    when the week has no ``exercises/exercises.toml``. ``save``: where the report is kept
    (``make progress`` reads it there)."""
    if not (folder / "exercises" / "exercises.toml").exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        report = save or Path(tmp) / "exercises.json"
        subprocess.run([sys.executable, "-m", "pytest", "-p", "shared.exercises", "--exercises",
                        str(folder), "--exercise-report", str(report), "-q", "--tb=no",
                        str(folder / "tests")], capture_output=True, text=True)
        if not report.exists():
            return []
        return json.loads(report.read_text())


def latest_metrics(nn: str, runs: Path, prefix: str | None = None) -> tuple[str, dict] | None:
    """(run name, last value of every scalar) of the newest run named weekNN* (or
    ``prefix``*, e.g. a track's ``track_htm``)."""
    prefix = prefix or f"week{nn}"
    mine = [r for r in list_runs(runs) if r.name.startswith(prefix)]
    if not mine:
        return None
    run = max(mine, key=lambda r: (r / "metrics.jsonl").stat().st_mtime)
    last: dict = {}
    for row in read_metrics(run):
        last.update({k: v for k, v in row.items() if k != "time"})
    return run.name, last


COMPRESS_DAYS = 2.0  # behind the plan by this much: drop stretches
EXTEND_DAYS = 2.0    # ahead by this much, core done: take more


@dataclass
class PivotState:
    """What the pivot decision is made from (all of it measured, none of it typed in)."""

    tests: SuiteResult | None = None
    exercises: list[dict] | None = None
    ahead_days: float | None = None  # against the saved plan; None: no plan
    benches: tuple[dict, ...] = ()

    def core_open(self) -> list[str]:
        return [e["exercise"] for e in self.exercises or () if e["tier"] == "core"
                and e["status"] != "passed"]


def decide(state: PivotState) -> tuple[str, str]:
    """The pivot decision tree, in order; the first rule that holds decides:

    1. the week's tests failed, or none ran                     -> repeat
    2. a Core exercise is not passed yet                        -> repeat
    3. behind the plan by COMPRESS_DAYS or more                 -> compress (drop the stretches ahead)
    4. ahead by EXTEND_DAYS or more, and no Core exercise open  -> extend (take parts off the path)
    5. otherwise                                                -> proceed

    Benchmark targets missed do not change the choice (they measure the repo's code, not
    you); the reason mentions them.
    """
    t = state.tests
    if t is not None and (t.failed or t.total == 0):
        return "repeat", f"{t.failed} failing tests" if t.failed else "no tests ran"
    undone = state.core_open()
    if undone:
        return "repeat", f"core exercises not passed yet: {', '.join(undone)}"
    ahead = state.ahead_days
    if ahead is not None and ahead <= -COMPRESS_DAYS:
        return "compress", (f"{-ahead:g} days behind the plan: drop the Stretch parts of the coming "
                            "weeks (or switch to a shorter path, make path WEEKS=...)")
    if ahead is not None and ahead >= EXTEND_DAYS and not undone:
        return "extend", (f"{ahead:g} days ahead of the plan with the core done: take this week's "
                          "Stretch or Mega parts that are not on your path")
    missed = [b["name"] for b in state.benches if b.get("target_met") is False]
    why = "tests green" if t else "no test run"
    why += ", core exercises done" if state.exercises else ""
    why += ", on plan" if ahead is not None else ", no path chosen (make path WEEKS=...)"
    if missed:
        why += f"; benchmark targets missed: {', '.join(missed)}"
    return "proceed", why


def exercise_lines(exercises: list[dict] | None) -> list[str]:
    """The "Measured" lines for the learner's exercises."""
    if exercises is None:
        return ["- exercises: this week has none (or --no-exercises)"]
    if not exercises:
        return ["- exercises: could not run them (try make weekNN-exercises)"]
    done = [e for e in exercises if e["status"] == "passed"]
    tiers = []
    for tier in ("core", "stretch", "mega"):
        mine = [e for e in exercises if e["tier"] == tier]
        if mine:
            tiers.append(f"{tier} {sum(e['status'] == 'passed' for e in mine)}/{len(mine)}")
    lines = [f"- exercises: {len(done)} of {len(exercises)} passed ({', '.join(tiers)})"]
    for e in exercises:
        if e["status"] != "passed":
            lines.append(f"  - {e['status']}: `{e['exercise']}` [{e['tier']}]: {e['detail']}")
    return lines


@dataclass
class Carry:
    """What the entry carries over from the curriculum, the plan and earlier entries."""

    objectives: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    papers: tuple[str, ...] = ()       # the queue, already merged with the earlier entries'
    next_plan: tuple[str, ...] = ()    # lines for "Next week's plan"


def paper_queue(log_text: str, papers) -> list[str]:
    """The unticked papers: those left open in the last entry's queue (yours included), then
    the week's papers from curriculum.toml; a paper ticked ``- [x]`` in any entry is done."""
    done = {m.strip() for m in re.findall(r"^- \[[xX]\] (.+)$", log_text, re.MULTILINE)}
    sections = re.split(r"^### Paper queue\s*$", log_text, flags=re.MULTILINE)
    carried = []
    if len(sections) > 1 and SUNDAY in log_text:
        last = re.split(r"^#{2,3} ", sections[-1], maxsplit=1, flags=re.MULTILINE)[0]
        carried = [m.strip() for m in re.findall(r"^- \[ \] (.+)$", last, re.MULTILINE)]
    out = []
    for p in [*carried, *papers]:
        if p not in done and p not in out:
            out.append(p)
    return out


def next_week_lines(unit, plan, cur) -> list[str]:
    """Next week's parts on the chosen path (or its Core parts when no path is chosen)."""
    if plan is not None:
        nxt = plan.next_unit(unit.key) if unit else None
        if nxt is None:
            return ["- the path ends here: choose what next (make path WEEKS=16 adds the tracks)"]
        lo, hi = plan.span(nxt.key)
        lines = [f"On your {plan.weeks}-week path: {nxt.label} ({nxt.topic}), "
                 f"{lo.isoformat()} to {hi.isoformat()}:"]
        lines += [f"- [ ] {s.part.name} [{s.part.tier}, {s.part.days:g} d]" for s in plan.slots_of(nxt.key)]
        return lines
    if cur is None or unit is None:
        return ["- "]
    later = [u for u in cur.units if u.kind == unit.kind and u.key > unit.key] if unit.kind == "week" else []
    if not later:
        return ["- "]
    nxt = later[0]
    return [f"No path chosen (make path WEEKS=8|12|16); {nxt.label}'s Core parts:",
            *[f"- [ ] {p.name} [core, {p.days:g} d]" for p in nxt.parts if p.tier == "core"]]


def render_entry(nn: str, tests: SuiteResult | None, metrics: tuple[str, dict] | None,
                 benches: list[dict], today: date, exercises: list[dict] | None = None,
                 carry: Carry | None = None, ahead_days: float | None = None) -> str:
    carry = carry or Carry()
    choice, why = decide(PivotState(tests, exercises, ahead_days, tuple(benches)))
    which = f"week {nn}" if nn.isdigit() else f"track {nn}"
    lines = [f"\n{SUNDAY} {today.isoformat()} ({which})\n", "### Measured\n"]
    if tests is None:
        lines.append("- tests: not run (--no-tests)")
    else:
        lines.append(f"- tests: {tests.passed} passed, {tests.failed} failed, {tests.skipped} skipped "
                     f"in {tests.seconds:.1f}s")
    lines += exercise_lines(exercises)
    if ahead_days is not None:
        word = "on plan" if abs(ahead_days) < 1 else (
            f"{abs(ahead_days):g} days {'ahead of' if ahead_days > 0 else 'behind'} the plan")
        lines.append(f"- plan: {word} (make progress)")
    if metrics:
        name, last = metrics
        figures = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in last.items())
        lines.append(f"- latest run `{name}`: {figures}")
    else:
        lines.append("- latest run: none under runs/ yet")
    for b in benches:
        summary = b.get("summary") or {}
        figures = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in summary.items())
        met = {True: "target met", False: "target missed", None: "no target"}[b.get("target_met")]
        lines.append(f"- benchmark `{b.get('name')}` ({met}): {figures}")
    if not benches:
        lines.append("- benchmarks: none saved yet (make weekNN-bench)")
    if carry.objectives:
        lines += ["\n### This week's objectives\n", *[f"- [ ] {o}" for o in carry.objectives]]
    if carry.questions:
        lines += ["\n### Self-check (answer without looking, then check the lesson)\n",
                  *[f"{i}. {q}\n   - " for i, q in enumerate(carry.questions, 1)]]
    lines += [
        "\n### Build log\n- What worked:\n- What broke:\n",
        "### Pivot decision\n"
        f"Choose one of {' / '.join(CHOICES)}. Suggested from the figures: **{choice}** ({why}).\n"
        "- Decision:\n- Why:\n",
        "### Next week's plan\n" + "\n".join(carry.next_plan or ("- ",)) + "\n",
        "### Paper queue\n" + ("\n".join(f"- [ ] {p}" for p in carry.papers) or "- ")
        + "\n\n(tick a paper `- [x]` when read; the next entry carries the rest)\n",
        "### Motivation check\n- Energy (1-5):\n- What would make next week more fun:\n",
    ]
    return "\n".join(lines)


def _learner_context(folder: Path, root: Path, today: date):
    """(curriculum unit, curriculum, saved plan, days ahead) where curriculum.toml exists."""
    from shared.curriculum import CurriculumError, load
    from shared.plan import PlanError, load_saved

    try:
        cur = load(root)
    except CurriculumError:
        return None, None, None, None
    unit = next((u for u in cur.units if Path(u.folder).name == folder.name), None)
    try:
        plan = load_saved(root, cur)
    except PlanError:
        plan = None
    ahead = None
    if plan is not None:
        from shared.progress import standing
        ahead = standing(root, plan, today).ahead
    return unit, cur, plan, ahead


def reflect(week: str, root: Path = Path("."), runs: Path | None = None, tests: bool = True,
            today: date | None = None, exercises: bool = True) -> Path:
    """Append the entry and return the REFLECTION.md path."""
    root = Path(root)
    folder = find_week(week, root)
    nn, prefix = unit_name(folder)
    today = today or date.today()
    runs = runs if runs is not None else runs_root()
    result = run_tests(folder) if tests else None
    report = None
    if exercises:
        from shared.plan import learner_dir
        report = learner_dir(root) / "exercises" / f"{folder.name}.json"
    mine = run_exercises(folder, report) if exercises else None
    log = folder / "REFLECTION.md"
    if not log.exists():
        title = f"Week {nn}" if nn.isdigit() else f"Track {nn}"
        log.write_text(f"# {title} reflection log\n", encoding="utf-8")
    unit, cur, plan, ahead = _learner_context(folder, root, today)
    carry = Carry()
    if unit is not None:
        carry = Carry(unit.objectives, unit.questions,
                      tuple(paper_queue(log.read_text(encoding="utf-8"), unit.papers)),
                      tuple(next_week_lines(unit, plan, cur)))
    entry = render_entry(nn, result, latest_metrics(nn, runs, prefix),
                         load_benchmarks(runs, prefix=prefix), today, mine, carry, ahead)
    with open(log, "a", encoding="utf-8") as f:
        f.write(entry)
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Append a dated Sunday entry to a week's REFLECTION.md.")
    ap.add_argument("--week", required=True, help="two-digit week number, e.g. 00, or a track's key, e.g. htm")
    ap.add_argument("--root", default=".", help="the repository root (default: .)")
    ap.add_argument("--runs", default=None, help="the runs folder (default: $NANOCHAT_RUNS or runs)")
    ap.add_argument("--no-tests", action="store_true", help="do not run the week's tests")
    ap.add_argument("--no-exercises", action="store_true", help="do not run your exercises")
    args = ap.parse_args(argv)
    try:
        log = reflect(args.week, Path(args.root), Path(args.runs) if args.runs else None,
                      tests=not args.no_tests, exercises=not args.no_exercises)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"appended a Sunday entry to {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
