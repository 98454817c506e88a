"""Week 12 exercise, the speedrun: which stages run, which are skipped.

A speedrun is a line of stages (``STAGES``: tokenizer, base, sft, rl, eval, report, chat), each
reading the one before it. Re-running the command must continue where it stopped, never
redo finished work, and never keep a stage whose input changed. ``schedule`` decides, before
anything runs, what every stage will do:

- ``"skip"``: the stage finished earlier (it is in ``finished``) AND no stage before it runs;
- ``"run"``: otherwise. Once a stage runs, every later stage runs too (its input is new);
  ``start`` (the ``--from`` stage) runs whatever ``finished`` says, and so does all after it;
- ``"off"``: the stage ``"rl"`` when ``rl`` is False; it neither runs nor makes the later
  stages run (the stage after it reads the one before it);
- the plan stops after ``until`` (``--to``): later stages are not in the returned dict.

Return ``{stage: "run" | "skip" | "off"}`` in ``STAGES`` order; a ``start`` or ``until`` that is
not a stage raises ``ValueError`` with ``"unknown stage 'NAME' for --from"`` (or ``--to``) and
the valid names. Fill in ``schedule``, then run ``make week12-exercises`` (``IMPL=solutions``
runs the worked one). It replaces ``week12_nanochat.speedrun.schedule`` while the speedrun's
tests run: re-runs that skip everything, ``--from sft``, a stage lost in the middle.
"""

from __future__ import annotations

STAGES = ("tokenizer", "base", "sft", "rl", "eval", "report", "chat")


def schedule(finished: set[str], start: str | None = None, until: str | None = None,
             rl: bool = True) -> dict[str, str]:
    """What each stage will do: "run", "skip" or "off" (see the module docstring)."""
    raise NotImplementedError("not implemented yet: schedule (skip a finished stage only while "
                              "nothing before it runs; --from forces its stage; rl off)")
