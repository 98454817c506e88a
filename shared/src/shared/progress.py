"""The learner's progress against their plan (``make progress``).

For every week and track on the chosen path (``shared.plan``) it reads the learner's own
state, never the repo's:

- **exercises**: the last report of ``make weekNN-exercises`` (saved as
  ``.learner/exercises/<folder>.json``), passed by tier, marked stale when an exercise file
  changed after it (``--run`` runs them all again first);
- **notebook**: the learner's run of the lesson (``runs/notebooks/weekNN*.ipynb``, written by
  ``make weekNN-notebook OUT=...``): has outputs, and is newer than the week's code;
- **benchmarks**: figures saved under ``runs/bench/weekNN*`` and how many met their target;
- **reflections**: the Sunday entries in the week's ``REFLECTION.md`` and the last date.

A part counts as done when its exercises all pass; a part without exercises counts as done
once the week has a Sunday entry (reflecting on a week is how you close it). From the plan
and the calendar: today's study week and part, and how many days ahead or behind the
plan you are (done days against the days the plan has finished by today).

Written each time: ``.learner/LOG.md``, the weekly log (Week 0 ... Week 13+) as a checklist
ticked from that state; ``.learner/history.jsonl``, one line per day (done days); and
``runs/progress.png``, the chart that ``make dashboard`` puts on its page.

Left out: judging the learner's prose, and any state not on disk.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from shared.curriculum import TIERS, Curriculum, CurriculumError, Part, Unit, load
from shared.metrics import load_benchmarks, runs_root
from shared.plan import Plan, PlanError, learner_dir, load_saved

ON_PLAN_DAYS = 1.0  # within a day of the plan counts as on plan
SUNDAY_RE = re.compile(r"^## Sunday (\d{4}-\d{2}-\d{2})", re.MULTILINE)


@dataclass
class UnitState:
    """What the learner has done in one week or track."""

    unit: Unit
    exercises: list[dict] | None = None  # the last report's rows; None: never run
    exercises_stale: bool = False
    notebook: str = "not run"
    benches: list[dict] = field(default_factory=list)
    reflections: list[date] = field(default_factory=list)

    def exercise_status(self, name: str) -> str | None:
        for row in self.exercises or ():
            if row.get("exercise") == name:
                return row.get("status")
        return None

    def part_done(self, part: Part) -> bool:
        if part.exercises:
            return all(self.exercise_status(e) == "passed" for e in part.exercises)
        return bool(self.reflections)

    def exercise_counts(self) -> dict[str, tuple[int, int]]:
        """tier -> (passed, total), over the exercises the curriculum lists for this unit."""
        out = {}
        for tier in TIERS:
            names = [e for p in self.unit.parts if p.tier == tier for e in p.exercises]
            if names:
                out[tier] = (sum(self.exercise_status(e) == "passed" for e in names), len(names))
        return out

    def core_done(self) -> bool:
        return all(self.part_done(p) for p in self.unit.parts if p.tier == "core")


# ---------------------------------------------------------------------------- reading state

def exercise_report(root: str | Path, unit: Unit) -> Path:
    return learner_dir(root) / "exercises" / f"{Path(unit.folder).name}.json"


def _newest(paths) -> float:
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def notebook_state(root: Path, unit: Unit, runs: Path) -> str:
    """The learner's own run of the lesson, judged against the week's code."""
    name = Path(unit.folder).name
    stem = name[:6] if unit.kind == "week" else name  # week07*.ipynb, track_htm*.ipynb
    mine = sorted((runs / "notebooks").glob(f"{stem}*.ipynb"),
                  key=lambda p: p.stat().st_mtime)
    if not mine:
        return "not run"
    nb = mine[-1]
    try:
        cells = json.loads(nb.read_text(encoding="utf-8")).get("cells", [])
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"unreadable ({nb.name})"
    if not any(c.get("outputs") for c in cells if c.get("cell_type") == "code"):
        return f"no outputs ({nb.name})"
    code = _newest([*(root / unit.folder / "src").rglob("*.py"),
                    *(root / unit.folder / "exercises").rglob("*.py")])
    when = date.fromtimestamp(nb.stat().st_mtime).isoformat()
    return f"ran {when}" if nb.stat().st_mtime >= code else f"older than the code (ran {when})"


def reflection_dates(root: Path, unit: Unit) -> list[date]:
    log = root / unit.folder / "REFLECTION.md"
    if not log.exists():
        return []
    return [date.fromisoformat(d) for d in SUNDAY_RE.findall(log.read_text(encoding="utf-8"))]


def unit_state(root: str | Path, unit: Unit, runs: Path | None = None) -> UnitState:
    root = Path(root)
    runs = runs if runs is not None else runs_root()
    state = UnitState(unit)
    if unit.status != "built":
        return state
    report = exercise_report(root, unit)
    if report.exists():
        try:
            state.exercises = json.loads(report.read_text())
        except json.JSONDecodeError:
            state.exercises = None
        else:
            edited = _newest((root / unit.folder / "exercises").glob("*.py"))
            state.exercises_stale = edited > report.stat().st_mtime
    state.notebook = notebook_state(root, unit, runs)
    prefix = f"week{unit.key}" if unit.kind == "week" else f"track_{unit.key}"
    state.benches = load_benchmarks(runs, prefix=prefix)
    state.reflections = reflection_dates(root, unit)
    return state


def run_exercises(root: str | Path, unit: Unit) -> list[dict] | None:
    """Run the learner's exercises of ``unit`` and save the report where progress reads it."""
    from shared.reflection import run_exercises as run

    return run(Path(root) / unit.folder, exercise_report(root, unit))


# ---------------------------------------------------------------------------- against the plan

@dataclass
class Standing:
    today: date
    plan: Plan
    states: dict[str, UnitState]
    done_days: float
    planned_days: float

    @property
    def ahead(self) -> float:
        """Days ahead of the plan (negative: behind)."""
        return self.done_days - self.planned_days

    def verdict(self) -> str:
        if self.today < self.plan.start:
            return f"the plan starts on {self.plan.start.isoformat()}"
        if abs(self.ahead) < ON_PLAN_DAYS:
            return "on plan"
        word = "ahead of" if self.ahead > 0 else "behind"
        return f"{abs(self.ahead):g} days {word} the plan"


def standing(root: str | Path, plan: Plan, today: date, runs: Path | None = None) -> Standing:
    states = {u.key: unit_state(root, u, runs) for u in plan.units()}
    done = sum(s.part.days for s in plan.slots if states[s.unit.key].part_done(s.part))
    return Standing(today, plan, states, done, plan.planned_by(today))


# ---------------------------------------------------------------------------- output

def _exercise_cell(state: UnitState) -> str:
    counts = state.exercise_counts()
    if not counts:
        return "none"
    if state.exercises is None:
        return "not run"
    text = ", ".join(f"{t} {p}/{n}" for t, (p, n) in counts.items())
    return text + (" (stale)" if state.exercises_stale else "")


def _bench_cell(state: UnitState) -> str:
    if not state.benches:
        return "none saved"
    targets = [b for b in state.benches if b.get("target_met") is not None]
    met = sum(bool(b.get("target_met")) for b in targets)
    return f"{len(state.benches)} saved, {met}/{len(targets)} targets met"


def report(st: Standing) -> str:
    plan = st.plan
    lines = [f"Path: {plan.weeks} weeks ({plan.name}), {plan.start.isoformat()} to "
             f"{plan.finish.isoformat()}. Today {st.today.isoformat()}: "
             f"study week {max(plan.study_week(st.today), 0)} of {plan.weeks}."]
    cur = plan.current(st.today)
    if cur:
        lines.append(f"The plan has you on {cur.unit.label} ({cur.unit.topic}): {cur.part.name} "
                     f"[{cur.part.tier}].")
    lines += [f"Done {st.done_days:g} of {plan.days:g} planned days; the plan has finished "
              f"{st.planned_days:g} by today: {st.verdict()}.", "",
              "| week | exercises passed | your notebook run | benchmarks | reflections | parts done |",
              "|---|---|---|---|---|---|"]
    for unit in plan.units():
        s = st.states[unit.key]
        mine = plan.slots_of(unit.key)
        done = sum(s.part_done(x.part) for x in mine)
        refl = f"{len(s.reflections)}, last {s.reflections[-1].isoformat()}" if s.reflections else "0"
        status = "" if unit.status == "built" else " (planned)"
        lines.append(f"| {unit.label}{status} | {_exercise_cell(s)} | {s.notebook} | "
                     f"{_bench_cell(s)} | {refl} | {done}/{len(mine)} |")
    return "\n".join(lines)


def checklist(st: Standing) -> str:
    """The weekly log, Week 0 ... Week 13+, ticked from the learner's state."""
    plan = st.plan
    lines = ["# Weekly log\n", f"Generated by `make progress` on {st.today.isoformat()} from your "
             f"state and your {plan.weeks}-week path ({plan.name}); edit nothing here, it is "
             "rewritten. A part is ticked when its exercises pass, or (parts without exercises) "
             "once the week has a Sunday entry in its REFLECTION.md.\n"]
    tracks_started = False
    for unit in plan.units():
        lo, hi = plan.span(unit.key)
        if unit.kind == "track" and not tracks_started:
            lines.append("## Week 13+: the tracks\n")
            tracks_started = True
        head = "###" if unit.kind == "track" else "##"
        name = f"Week {int(unit.key)}" if unit.kind == "week" else f"Track {unit.key}"
        lines.append(f"{head} {name}: {unit.topic} ({lo.isoformat()} to {hi.isoformat()})\n")
        s = st.states[unit.key]
        for slot in plan.slots_of(unit.key):
            p = slot.part
            box = "x" if s.part_done(p) else " "
            ex = ""
            if p.exercises:
                marks = [f"{e} {'ok' if s.exercise_status(e) == 'passed' else 'open'}" for e in p.exercises]
                ex = f"; exercises: {', '.join(marks)}"
            lines.append(f"- [{box}] {p.name} ({p.tier}, {p.days:g} d{ex})")
        box = "x" if s.reflections else " "
        lines.append(f"- [{box}] Sunday reflection (`make reflect WEEK={unit.key}`)\n")
    return "\n".join(lines)


def record_history(root: str | Path, st: Standing) -> list[dict]:
    """Append today's done days to history.jsonl (one line per day) and return the history."""
    path = learner_dir(root) / "history.jsonl"
    rows = []
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("date") != st.today.isoformat()]
    rows.append({"date": st.today.isoformat(), "done_days": st.done_days})
    rows.sort(key=lambda r: r["date"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("history.jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return rows


def plot(st: Standing, history: list[dict], out: Path) -> Path:
    """runs/progress.png: days done against the plan over the calendar, and exercises by week."""
    from matplotlib.figure import Figure  # no pyplot: no backend switch

    plan = st.plan
    fig = Figure(figsize=(11, 3.8))
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    days = list(range(int(plan.days) + 8))
    ax.plot([plan.date_of(d) for d in days], [plan.planned_by(plan.date_of(d)) for d in days],
            color="0.5", ls="--", label=f"plan ({plan.weeks} weeks, {plan.name})")
    if history:
        ax.plot([date.fromisoformat(r["date"]) for r in history], [r["done_days"] for r in history],
                marker="o", color="C0", label="done")
    ax.axvline(st.today, color="C3", lw=1, alpha=0.6, label="today")
    ax.set_ylabel("days of parts")
    ax.set_title(f"{st.verdict()}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    units = [u for u in plan.units() if st.states[u.key].exercise_counts()]
    bottoms = [0] * len(units)
    for i, tier in enumerate(TIERS):
        passed = [st.states[u.key].exercise_counts().get(tier, (0, 0))[0] for u in units]
        total = [st.states[u.key].exercise_counts().get(tier, (0, 0))[1] for u in units]
        if not sum(total):
            continue
        xs = range(len(units))
        bx.bar(xs, total, bottom=bottoms, color=f"C{i}", alpha=0.25)
        bx.bar(xs, passed, bottom=bottoms, color=f"C{i}", label=f"{tier} passed")
        bottoms = [b + t for b, t in zip(bottoms, total)]
    bx.set_xticks(range(len(units)), [u.key for u in units])
    bx.set_title("exercises passed (pale: still open)", fontsize=10)
    bx.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    return out


def progress(root: str | Path = ".", today: date | None = None, runs: Path | None = None,
             run: bool = False) -> tuple[str, Standing]:
    """Compute the standing, write LOG.md, history.jsonl and runs/progress.png; return the report."""
    root = Path(root)
    cur: Curriculum = load(root)
    plan = load_saved(root, cur)
    if plan is None:
        raise PlanError("no study path chosen yet: make path WEEKS=8|12|16 [START=YYYY-MM-DD]")
    runs = runs if runs is not None else runs_root()
    if run:
        for unit in plan.units():
            if unit.status == "built":
                run_exercises(root, unit)
    st = standing(root, plan, today or date.today(), runs)
    (learner_dir(root) / "LOG.md").write_text(checklist(st), encoding="utf-8")
    chart = plot(st, record_history(root, st), runs / "progress.png")
    text = report(st) + (f"\n\nThe weekly log: {learner_dir(root) / 'LOG.md'}; the chart: {chart} "
                         "(also on `make dashboard`).")
    return text, st


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Your progress against your study path.")
    ap.add_argument("--root", default=".", help="the repository root")
    ap.add_argument("--runs", default=None, help="the runs folder (default: $NANOCHAT_RUNS or runs)")
    ap.add_argument("--run", action="store_true", help="run every week's exercises first (minutes)")
    ap.add_argument("--today", default=None, help="YYYY-MM-DD (default: today)")
    args = ap.parse_args(argv)
    try:
        today = date.fromisoformat(args.today) if args.today else None
    except ValueError:
        print(f"--today must be YYYY-MM-DD; got {args.today!r}", file=sys.stderr)
        return 2
    try:
        text, _ = progress(args.root, today, Path(args.runs) if args.runs else None, args.run)
    except (PlanError, CurriculumError) as e:
        print(e, file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
