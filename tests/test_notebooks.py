"""Every lesson notebook runs top to bottom in smoke mode (NANOCHAT_SMOKE=1)."""

from pathlib import Path

import pytest

from shared.notebook import run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in [*ROOT.glob("week[0-9][0-9]_*/*.ipynb"), *ROOT.glob("tracks/*/*.ipynb")]
                   if p.stem == p.parent.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.parent.name)
def test_notebook(path, tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))  # keep runs/ out of the repo
    seconds = run_notebook(path, smoke=True, timeout=300)
    assert seconds > 0
