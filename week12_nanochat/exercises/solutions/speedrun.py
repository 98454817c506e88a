"""Week 12 exercise, worked: ``schedule`` (see ../speedrun.py for the task)."""

from __future__ import annotations

STAGES = ("tokenizer", "base", "sft", "rl", "eval", "report", "chat")


def schedule(finished: set[str], start: str | None = None, until: str | None = None,
             rl: bool = True) -> dict[str, str]:
    """The first stage that must run (unfinished or --from) and everything after it run."""
    for flag, name in (("--from", start), ("--to", until)):
        if name is not None and name not in STAGES:
            raise ValueError(f"unknown stage {name!r} for {flag}; valid: {', '.join(STAGES)}")
    stages = STAGES[:STAGES.index(until) + 1] if until is not None else STAGES
    live = [s for s in stages if rl or s != "rl"]
    must = [i for i, s in enumerate(live) if s not in finished or s == start]
    first = must[0] if must else len(live)
    plan = {s: ("run" if i >= first else "skip") for i, s in enumerate(live)}
    return {s: plan.get(s, "off") for s in stages}
